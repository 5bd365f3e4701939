"""A relying party that trusts Mayfly through OIDC discovery, with PyJWT.

For tests/oidc_interop.rs. It knows only the discovery URL, as a service
that federates with Mayfly (an OIDC-aware API gateway, a cloud's workload
identity federation) would:

    oidc_relying_party.py --discovery URL --token JWT --audience AUD

1. GET the discovery document; take `issuer` and `jwks_uri`.
2. PyJWKClient fetches the JWKS and picks the key by the token's `kid`.
3. jwt.decode with ES256 only, the audience, the issuer, and `sub`, `aud`,
   `exp`, `iat`, `iss` required: the token must pass.
4. Negative checks next to that positive one, each of which must fail with
   the PyJWT error named: another audience (InvalidAudienceError), another
   issuer (InvalidIssuerError), a signature byte flipped
   (InvalidSignatureError), the same claims signed by a key the JWKS does
   not hold under the token's kid (InvalidSignatureError), and `alg: none`
   (InvalidAlgorithmError, as ES256 alone is allowed).

Prints one JSON object on stdout; exits 1 when a check fails, naming it.
"""

import argparse
import base64
import json
import sys
import urllib.request
from importlib.metadata import version

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

TIMEOUT_SECONDS = 10


class CheckFailed(Exception):
    """A check of the broker's answer failed."""


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise CheckFailed(f"GET {url}: HTTP {response.status}")
        return json.loads(response.read())


def decode(token, key, audience, issuer):
    return jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["sub", "aud", "exp", "iat", "iss"]},
    )


def must_fail(name, expected, action):
    try:
        action()
    except expected:
        return name
    except jwt.PyJWTError as error:
        raise CheckFailed(f"{name}: failed with {type(error).__name__}, not {expected.__name__}")
    raise CheckFailed(f"{name}: was accepted")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--discovery", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()

    result = {"pyjwt": version("PyJWT"), "checks": []}
    try:
        document = fetch_json(args.discovery)
        issuer = document["issuer"]
        jwks_uri = document["jwks_uri"]
        if "ES256" not in document.get("id_token_signing_alg_values_supported", []):
            raise CheckFailed("discovery does not list ES256")

        key = jwt.PyJWKClient(jwks_uri, timeout=TIMEOUT_SECONDS).get_signing_key_from_jwt(
            args.token
        )
        claims = decode(args.token, key, args.audience, issuer)
        result.update(
            issuer=issuer,
            sub=claims["sub"],
            aud=claims["aud"],
            iss=claims["iss"],
            kid=key.key_id,
            # Mayfly's optional governance claims ([jwt] governance_claims),
            # as a relying party that enforces them would read them.
            governance={
                name: claims[name]
                for name in ("mayfly_env", "mayfly_data_class")
                if name in claims
            },
        )
        result["checks"].append("accepted")

        checks = result["checks"]
        checks.append(
            must_fail(
                "another audience",
                jwt.InvalidAudienceError,
                lambda: decode(args.token, key, args.audience + "-other", issuer),
            )
        )
        checks.append(
            must_fail(
                "another issuer",
                jwt.InvalidIssuerError,
                lambda: decode(args.token, key, args.audience, issuer + "/other"),
            )
        )
        header, payload, signature = args.token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[5] ^= 0x01
        flipped = f"{header}.{payload}.{b64(bytes(raw))}"
        checks.append(
            must_fail(
                "a flipped signature",
                jwt.InvalidSignatureError,
                lambda: decode(flipped, key, args.audience, issuer),
            )
        )
        stranger = ec.generate_private_key(ec.SECP256R1())
        forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": key.key_id})
        checks.append(
            must_fail(
                "a stranger's key under the token's kid",
                jwt.InvalidSignatureError,
                lambda: decode(forged, key, args.audience, issuer),
            )
        )
        unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": key.key_id})
        checks.append(
            must_fail(
                "alg none",
                jwt.InvalidAlgorithmError,
                lambda: decode(unsigned, key, args.audience, issuer),
            )
        )
        result["ok"] = True
    except (CheckFailed, jwt.PyJWTError, OSError, KeyError, ValueError) as error:
        result["ok"] = False
        result["failed"] = f"{type(error).__name__}: {error}"
        print(json.dumps(result))
        print(f"oidc_relying_party: {result['failed']}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
