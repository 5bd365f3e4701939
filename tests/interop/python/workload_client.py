"""The SPIFFE Workload API through py-spiffe, for tests/workload_interop.rs.

py-spiffe (the `spiffe` package on PyPI) talks to the agent at
SPIFFE_ENDPOINT_SOCKET through grpcio's C core, exactly as a Python workload
would: no option of the client is changed.

    workload_client.py entitled --spiffe-id ID --audience AUD
        All five calls py-spiffe offers, each checked here with tools of the
        Python ecosystem: FetchX509SVID (the SPIFFE ID, the key matches the
        leaf), FetchX509Bundles (the chain verifies against the bundle with
        `cryptography`'s verifier, and not against a stranger's CA),
        FetchJWTSVID (the SPIFFE ID and the audience), FetchJWTBundles (the
        token verifies against it with py-spiffe and PyJWT, and not for another
        audience), ValidateJWTSVID (accepted for the audience, refused with
        INVALID_ARGUMENT for another).

    workload_client.py denied --token JWT --audience AUD
        The same five calls from a caller no entry matches: each must fail
        with PERMISSION_DENIED (ValidateJWTSVID with a valid token).

Prints one JSON object on stdout. Exits 1 when a check fails, naming it on
stderr; the JSON then has "ok": false and the failed check.
"""

import argparse
import datetime
import json
import sys
import traceback
from importlib.metadata import version

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from spiffe import JwtSvid, WorkloadApiClient

# Every call has a deadline, so a hung agent fails the test rather than stalls it.
TIMEOUT_SECONDS = 10


class CheckFailed(Exception):
    """A check of the agent's answer failed."""


def check(condition, what):
    if not condition:
        raise CheckFailed(what)


def grpc_code(error):
    """The gRPC status code behind a py-spiffe error (it wraps grpc.RpcError)."""
    while error is not None:
        if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
            return error.code().name
        error = error.__cause__
    return None


def raised(call):
    """The exception `call` raised, or None."""
    try:
        call()
    except Exception as error:
        return error
    return None


def audiences(claim):
    """The `aud` claim as a list: JWT allows a string or an array."""
    return [claim] if isinstance(claim, str) else sorted(claim)


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def public_der(key):
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def stranger_ca():
    """A self-signed CA the agent never heard of: the verifier's negative control."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def verify_chain(chain, authorities):
    """cryptography's X.509 path validation for client auth; returns the leaf's URI SANs."""
    verifier = PolicyBuilder().store(Store(authorities)).build_client_verifier()
    verified = verifier.verify(chain[0], chain[1:])
    return [
        name.value
        for name in verified.subjects or []
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def entitled(client, spiffe_id, audience):
    result = {}

    # FetchX509SVID
    svid = client.fetch_x509_svid()
    check(str(svid.spiffe_id) == spiffe_id, f"X509-SVID is {svid.spiffe_id}, not {spiffe_id}")
    check(
        public_der(svid.private_key.public_key()) == public_der(svid.leaf.public_key()),
        "the X509-SVID's private key does not match its leaf",
    )
    trust_domain = svid.spiffe_id.trust_domain
    result["x509_svid"] = {
        "spiffe_id": str(svid.spiffe_id),
        "chain_pem": [pem(c) for c in svid.cert_chain],
    }

    # FetchX509Bundles: the chain verifies against it, and only against it.
    bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(trust_domain)
    check(bundle is not None, f"no X.509 bundle for {trust_domain}")
    authorities = list(bundle.x509_authorities)
    check(authorities, "the X.509 bundle is empty")
    uris = verify_chain(svid.cert_chain, authorities)
    check(uris == [spiffe_id], f"verified leaf names {uris}, not [{spiffe_id}]")
    stranger = raised(lambda: verify_chain(svid.cert_chain, [stranger_ca()]))
    check(
        isinstance(stranger, VerificationError),
        f"against a stranger's CA the chain gave {stranger!r}, not a VerificationError",
    )
    result["x509_bundle"] = {
        "trust_domain": trust_domain.as_spiffe_id(),
        "authorities_pem": [pem(c) for c in authorities],
        "verified_uris": uris,
    }

    # FetchJWTSVID
    jwt_svid = client.fetch_jwt_svid({audience})
    check(str(jwt_svid.spiffe_id) == spiffe_id, f"JWT-SVID is {jwt_svid.spiffe_id}, not {spiffe_id}")
    check(audiences(jwt_svid.audience) == [audience], f"JWT-SVID audience {jwt_svid.audience}")
    token = jwt_svid.token
    result["jwt_svid"] = {
        "spiffe_id": str(jwt_svid.spiffe_id),
        "audience": audiences(jwt_svid.audience),
        "token": token,
    }

    # FetchJWTBundles: the token verifies against it (py-spiffe on PyJWT),
    # for the audience and not for another.
    jwt_bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(trust_domain)
    check(jwt_bundle is not None, f"no JWT bundle for {trust_domain}")
    kid = jwt.get_unverified_header(token).get("kid")
    check(jwt_bundle.get_jwt_authority(kid) is not None, f"kid {kid} is not in the JWT bundle")
    verified = JwtSvid.parse_and_validate(token, jwt_bundle, {audience})
    check(str(verified.spiffe_id) == spiffe_id, f"verified JWT-SVID is {verified.spiffe_id}")
    check(
        raised(lambda: JwtSvid.parse_and_validate(token, jwt_bundle, {audience + "-other"})),
        "the JWT-SVID verified locally for another audience",
    )
    result["jwt_bundle"] = {"kids": sorted(jwt_bundle.jwt_authorities), "token_kid": kid}

    # ValidateJWTSVID: accepted for its audience, refused for another.
    validated = client.validate_jwt_svid(token, audience)
    check(str(validated.spiffe_id) == spiffe_id, f"validated as {validated.spiffe_id}")
    refusal = raised(lambda: client.validate_jwt_svid(token, audience + "-other"))
    check(refusal, "ValidateJWTSVID accepted the token for another audience")
    wrong_audience = grpc_code(refusal)
    check(
        wrong_audience == "INVALID_ARGUMENT",
        f"ValidateJWTSVID for another audience: {wrong_audience}, not INVALID_ARGUMENT",
    )
    result["validate"] = {"accepted": str(validated.spiffe_id), "wrong_audience": wrong_audience}
    return result


def denied(client, token, audience):
    """Each call's outcome: the gRPC code it failed with, or OK."""
    calls = {
        "FetchX509SVID": client.fetch_x509_svid,
        "FetchX509Bundles": client.fetch_x509_bundles,
        "FetchJWTSVID": lambda: client.fetch_jwt_svid({audience}),
        "FetchJWTBundles": client.fetch_jwt_bundles,
        "ValidateJWTSVID": lambda: client.validate_jwt_svid(token, audience),
    }
    outcomes = {}
    for name, call in calls.items():
        error = raised(call)
        outcomes[name] = "OK" if error is None else grpc_code(error) or f"not gRPC: {error!r}"
    wrong = {name: code for name, code in outcomes.items() if code != "PERMISSION_DENIED"}
    return {"calls": outcomes}, (f"not PERMISSION_DENIED: {wrong}" if wrong else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    entitled_mode = modes.add_parser("entitled")
    entitled_mode.add_argument("--spiffe-id", required=True)
    entitled_mode.add_argument("--audience", required=True)
    denied_mode = modes.add_parser("denied")
    denied_mode.add_argument("--token", required=True)
    denied_mode.add_argument("--audience", required=True)
    args = parser.parse_args()

    output = {
        "client": "py-spiffe",
        "versions": {name: version(name) for name in ("spiffe", "grpcio", "cryptography", "PyJWT")},
        "ok": True,
    }
    failure = None
    try:
        with WorkloadApiClient(default_timeout=TIMEOUT_SECONDS) as client:
            if args.mode == "entitled":
                output.update(entitled(client, args.spiffe_id, args.audience))
            else:
                result, failure = denied(client, args.token, args.audience)
                output.update(result)
    except Exception as error:
        traceback.print_exc()
        failure = f"{type(error).__name__}: {error} (gRPC code {grpc_code(error)})"
    if failure:
        output.update(ok=False, failed=failure)
        print(f"py-spiffe client failed: {failure}", file=sys.stderr)
    print(json.dumps(output))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
