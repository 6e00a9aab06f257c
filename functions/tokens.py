"""HS256 JSON Web Tokens: what a client presents at `$connect` to prove which user it is.

Written with the standard library (hmac, hashlib, base64, json) so the Lambda package needs no
JWT dependency. Only HS256 is accepted: the algorithm is fixed by this module, never chosen by
the token, which closes the `alg: none` and algorithm-confusion holes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from typing import Any

ALGORITHM = "HS256"
# Clock skew tolerated between the issuer and Lambda on `exp` and `nbf`; small enough that an
# expired token is refused within half a minute.
DEFAULT_LEEWAY_SECONDS = 30

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class InvalidToken(Exception):
    """The token must not be trusted; `reason` is a short, stable code safe to log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def issue_token(
    user_id: str,
    secret: str,
    *,
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
    not_before: float | None = None,
) -> str:
    """A signed token whose `sub` is `user_id`, valid for `ttl_seconds` from `now`."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user_id, "iat": issued_at, "exp": issued_at + ttl_seconds}
    if not_before is not None:
        claims["nbf"] = int(not_before)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    header = {"alg": ALGORITHM, "typ": "JWT"}
    signing_input = f"{_encode_json(header)}.{_encode_json(claims)}"
    return f"{signing_input}.{_b64encode(_sign(signing_input, secret))}"


def verify_token(
    token: str,
    secret: str,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
) -> str:
    """The user id (`sub`) of a valid token; raises InvalidToken otherwise.

    `iss` and `aud` are checked only when `issuer` / `audience` are given; `aud` may be a
    string or a list that contains the audience.
    """
    if not isinstance(token, str):
        raise InvalidToken("malformed", "token is not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed", "expected three dot-separated parts")
    encoded_header, encoded_claims, encoded_signature = parts

    header = _decode_json(encoded_header, "header")
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("unsupported_alg", f"only {ALGORITHM} is accepted")

    # Nothing in the claims is read before the signature proves who wrote them.
    signature = _b64decode(encoded_signature, "signature")
    expected = _sign(f"{encoded_header}.{encoded_claims}", secret)
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("bad_signature")

    claims = _decode_json(encoded_claims, "claims")
    current = time.time() if now is None else now

    expires = claims.get("exp")
    if not _is_number(expires):
        raise InvalidToken("missing_exp", "exp must be a number")
    if current > expires + leeway_seconds:
        raise InvalidToken("expired")

    if "nbf" in claims:
        not_before = claims["nbf"]
        if not _is_number(not_before):
            raise InvalidToken("malformed", "nbf must be a number")
        if not_before > current + leeway_seconds:
            raise InvalidToken("not_yet_valid")

    if issuer is not None and claims.get("iss") != issuer:
        raise InvalidToken("wrong_issuer")

    if audience is not None:
        claimed = claims.get("aud")
        audiences = claimed if isinstance(claimed, list) else [claimed]
        if audience not in audiences:
            raise InvalidToken("wrong_audience")

    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("missing_sub", "sub must be a non-empty string")
    return subject


def _sign(signing_input: str, secret: str) -> bytes:
    if not secret:
        # A configuration error, not a bad token: an empty key would accept forged tokens.
        raise ValueError("the signing secret must not be empty")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _is_number(value: Any) -> bool:
    # bool is an int subclass (`"exp": true` is not a time), and json accepts NaN and Infinity,
    # which would make a token that never expires.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(segment: str, part: str) -> bytes:
    # urlsafe_b64decode silently drops characters outside the alphabet; refuse them instead.
    if not _BASE64URL.match(segment) or len(segment) % 4 == 1:
        raise InvalidToken("malformed", f"{part} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", f"{part} is not base64url") from None


def _encode_json(value: dict[str, Any]) -> str:
    return _b64encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _decode_json(segment: str, part: str) -> dict[str, Any]:
    raw = _b64decode(segment, part)
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise InvalidToken("malformed", f"{part} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed", f"{part} is not a JSON object")
    return value
