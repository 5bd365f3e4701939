#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/.

Seeds give the fuzzer what it cannot find by mutation: real certificates,
CSRs and keys inside the formats Mayfly parses. Needs `cryptography` and
`openssl`. Re-running replaces the seeds with fresh keys; the targets do not
depend on which keys they hold.

    python3 fuzz/seeds/make_seeds.py
"""

import base64
import datetime
import json
import pathlib
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

SEEDS = pathlib.Path(__file__).resolve().parent


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def write(target: str, name: str, data) -> None:
    directory = SEEDS / target
    directory.mkdir(exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / name).write_bytes(data)


def ec_params(public_key) -> dict:
    numbers = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {256: "P-256", 384: "P-384"}[public_key.curve.key_size]
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
    }


def rsa_params(public_key) -> dict:
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": b64url(uint(numbers.n)), "e": b64url(uint(numbers.e))}


def jwk_params(public_key) -> dict:
    if isinstance(public_key, rsa.RSAPublicKey):
        return rsa_params(public_key)
    return ec_params(public_key)


def ca_certificate(key, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def bundles() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = []
    for key, name in [(p256, "p256"), (p384, "p384"), (rsa2048, "rsa")]:
        der = ca_certificate(key, f"seed {name} CA")
        entry = {"use": "x509-svid", "x5c": [base64.b64encode(der).decode()]}
        entry.update(jwk_params(key.public_key()))
        keys.append(entry)
    for key, kid in [(p256, "k-p256"), (p384, "k-p384"), (rsa2048, "k-rsa")]:
        entry = {"use": "jwt-svid", "kid": kid}
        entry.update(jwk_params(key.public_key()))
        keys.append(entry)
    full = {"keys": keys, "spiffe_sequence": 7, "spiffe_refresh_hint": 300}
    write("spiffe_bundle", "full.json", json.dumps(full, indent=2))
    # The entries the spec says to skip, next to one of each kind.
    skipped = {
        "keys": [
            keys[0],
            keys[3],
            {"kty": "EC", "use": "sig", "kid": "oidc", **ec_params(p256.public_key())},
            {"kty": "OKP", "use": "jwt-svid", "kid": "ed", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "EC", "use": "jwt-svid", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        ],
        "some_extension": {"ignored": True},
    }
    write("spiffe_bundle", "skipped.json", json.dumps(skipped))
    write("spiffe_bundle", "empty.json", '{"keys":[]}')

    jwks = {
        "keys": [
            {"use": "sig", "kid": "rsa", "alg": "RS256", **rsa_params(rsa2048.public_key())},
            {"use": "sig", "kid": "es256", "alg": "ES256", **ec_params(p256.public_key())},
            {"kid": "es384", "key_ops": ["verify"], **ec_params(p384.public_key())},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"},
            {"use": "enc", "kid": "enc", **ec_params(p256.public_key())},
        ]
    }
    write("jwks", "keys.json", json.dumps(jwks, indent=2))


def tokens() -> None:
    def token(header: dict, claims: dict, signature: bytes) -> str:
        return ".".join(
            b64url(part)
            for part in (json.dumps(header).encode(), json.dumps(claims).encode(), signature)
        )

    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:org/app:ref:refs/heads/main",
        "aud": ["mayfly"],
        "exp": 1767229200,
        "iat": 1767225600,
        "nbf": 1767225600,
        "jti": "b6a1c0de-1",
    }
    write("attestation_jwt", "rs256", token({"alg": "RS256", "kid": "k1", "typ": "JWT"}, claims, b"\x01" * 256))
    write("attestation_jwt", "es256", token({"alg": "ES256", "kid": "k2"}, {"iss": "https://kubernetes.default.svc", "aud": "mayfly", "exp": 1767229200}, b"\x02" * 64))
    write("attestation_jwt", "none", token({"alg": "none"}, {"iss": "x"}, b""))


def csrs() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cases = {
            "p256": (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], ["-sha256"]),
            "p384": (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], ["-sha384"]),
            "ed25519": (["-algorithm", "ED25519"], []),
            "rsa2048-sha256": (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], ["-sha256"]),
            "rsa2048-sha512": (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], ["-sha512"]),
            "rsa2048-pss": (
                ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                ["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"],
            ),
        }
        for name, (keygen, signing) in cases.items():
            key = tmp / f"{name}.pem"
            subprocess.run(["openssl", "genpkey", *keygen, "-out", str(key)], check=True, capture_output=True)
            der = subprocess.run(
                ["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=workload",
                 "-addext", "subjectAltName=URI:spiffe://example.org/w", "-outform", "DER", *signing],
                check=True, capture_output=True,
            ).stdout
            write("csr", f"{name}.der", der)


def strings() -> None:
    for name, text in {
        "id": "spiffe://example.org/ns/billing/sa/api",
        "trust-domain": "example.org",
        "trust-domain-id": "spiffe://example.org",
        "dots": "spiffe://example.org/a/../b",
        "percent": "spiffe://example.org/a%20b",
    }.items():
        write("spiffe_id", name, text)
    for name, text in {
        "k8s": "k8s:ns:billing",
        "x509pop": "x509pop:san:uri:spiffe://example.org/device",
        "unix": "unix:uid:1000",
    }.items():
        write("selector", name, text)
    write("join_token", "token", "mf1." + b64url(bytes(range(32))))
    write("join_token", "hash", "0123456789abcdef" * 4)
    for name, after in {
        "entries": "0123456789abcdef",
        "revocations": "spiffe-id:spiffe://example.org/billing",
    }.items():
        body = {"v": 1, "list": name, "after": after}
        write("page_token", name, b64url(json.dumps(body, separators=(",", ":")).encode()))


if __name__ == "__main__":
    bundles()
    tokens()
    csrs()
    strings()
