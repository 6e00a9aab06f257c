from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from functions.tokens import DEFAULT_LEEWAY_SECONDS, InvalidToken, issue_token, verify_token

SECRET = "a-signing-key-of-at-least-32-characters"
NOW = 1_796_322_040.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(claims: dict[str, Any], *, header: Any = None, secret: str = SECRET) -> str:
    """A token signed independently of the module under test."""
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def valid_claims(**overrides: Any) -> dict[str, Any]:
    return {"sub": "user-1", "iat": int(NOW), "exp": int(NOW) + 600, **overrides}


def reason_of(token: str, **kwargs: Any) -> str:
    kwargs.setdefault("now", NOW)
    with pytest.raises(InvalidToken) as caught:
        verify_token(token, kwargs.pop("secret", SECRET), **kwargs)
    return caught.value.reason


def test_issued_token_verifies_to_its_user() -> None:
    token = issue_token("user-42", SECRET, now=NOW)
    assert verify_token(token, SECRET, now=NOW + 10) == "user-42"


def test_issued_token_is_a_standard_hs256_jwt() -> None:
    token = issue_token(
        "user-42", SECRET, ttl_seconds=120, issuer="iss-1", audience="aud-1", now=NOW
    )
    header, claims, signature = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(header))) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(pad(claims))) == {
        "sub": "user-42",
        "iat": int(NOW),
        "exp": int(NOW) + 120,
        "iss": "iss-1",
        "aud": "aud-1",
    }
    expected = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(pad(signature)) == expected


def test_independently_signed_token_verifies() -> None:
    assert verify_token(forge(valid_claims()), SECRET, now=NOW) == "user-1"


def test_issuer_and_audience_accepted_when_they_match() -> None:
    token = issue_token("user-1", SECRET, issuer="https://id.example", audience="ws", now=NOW)
    assert verify_token(token, SECRET, issuer="https://id.example", audience="ws", now=NOW)


def test_audience_list_containing_ours_is_accepted() -> None:
    token = forge(valid_claims(aud=["other", "ws"]))
    assert verify_token(token, SECRET, audience="ws", now=NOW) == "user-1"


def test_unconfigured_issuer_and_audience_are_not_checked() -> None:
    token = forge(valid_claims(iss="anyone", aud="anything"))
    assert verify_token(token, SECRET, now=NOW) == "user-1"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "only.two",
        "a.b.c.d",
        f"not base64!.{b64(b'{}')}.c2ln",
        f"{b64(b'{}')}A.{b64(b'{}')}.c2ln",
        f"{b64(b'{}')}AA.{b64(b'{}')}.c2ln",
        f"{b64(b'not json')}.{b64(b'{}')}.c2ln",
        f"{b64(b'[1,2]')}.{b64(b'{}')}.c2ln",
    ],
    ids=["empty", "two-parts", "four-parts", "bad-base64", "trailing-byte", "bad-length",
         "header-not-json",
         "header-not-object"],
)  # fmt: skip
def test_malformed_tokens_are_rejected(token: str) -> None:
    assert reason_of(token) == "malformed"


def test_claims_that_are_not_an_object_are_malformed() -> None:
    header = b64(json.dumps({"alg": "HS256"}).encode())
    claims = b64(b"[1]")
    signature = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert reason_of(f"{header}.{claims}.{b64(signature)}") == "malformed"


def test_alg_none_is_rejected_even_without_signature() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = b64(json.dumps(valid_claims()).encode())
    assert reason_of(f"{header}.{claims}.") == "unsupported_alg"


@pytest.mark.parametrize("alg", ["HS512", "RS256", "hs256", None])
def test_other_algorithms_are_rejected(alg: str | None) -> None:
    assert reason_of(forge(valid_claims(), header={"alg": alg})) == "unsupported_alg"


def test_token_signed_with_another_key_is_rejected() -> None:
    token = issue_token("user-1", "another-key-another-key-another-key", now=NOW)
    assert reason_of(token) == "bad_signature"


def test_tampered_claims_are_rejected() -> None:
    header, _, signature = issue_token("user-1", SECRET, now=NOW).split(".")
    claims = b64(json.dumps(valid_claims(sub="admin")).encode())
    assert reason_of(f"{header}.{claims}.{signature}") == "bad_signature"


@pytest.mark.parametrize("exp", [None, "tomorrow", True, [1]])
def test_missing_or_non_numeric_exp_is_rejected(exp: Any) -> None:
    claims = valid_claims()
    if exp is None:
        del claims["exp"]
    else:
        claims["exp"] = exp
    assert reason_of(forge(claims)) == "missing_exp"


def test_expired_token_is_rejected_after_the_leeway() -> None:
    token = issue_token("user-1", SECRET, ttl_seconds=60, now=NOW)
    expiry = NOW + 60
    assert verify_token(token, SECRET, now=expiry + DEFAULT_LEEWAY_SECONDS) == "user-1"
    assert reason_of(token, now=expiry + DEFAULT_LEEWAY_SECONDS + 1) == "expired"
    assert reason_of(token, now=expiry + 1, leeway_seconds=0) == "expired"


def test_token_not_yet_valid_is_rejected() -> None:
    token = issue_token("user-1", SECRET, now=NOW, not_before=NOW + 300)
    assert reason_of(token) == "not_yet_valid"
    assert verify_token(token, SECRET, now=NOW + 300) == "user-1"


def test_non_numeric_nbf_is_rejected() -> None:
    assert reason_of(forge(valid_claims(nbf="soon"))) == "malformed"


@pytest.mark.parametrize("claimed", [{"iss": "https://evil.example"}, {}])
def test_wrong_or_missing_issuer_is_rejected(claimed: dict[str, str]) -> None:
    token = forge(valid_claims(**claimed))
    assert reason_of(token, issuer="https://id.example") == "wrong_issuer"


@pytest.mark.parametrize("aud", ["other", ["other", "third"], None])
def test_wrong_or_missing_audience_is_rejected(aud: Any) -> None:
    claims = valid_claims() if aud is None else valid_claims(aud=aud)
    assert reason_of(forge(claims), audience="ws") == "wrong_audience"


@pytest.mark.parametrize("sub", [None, "", 42, ["user-1"]])
def test_missing_empty_or_non_string_sub_is_rejected(sub: Any) -> None:
    claims = valid_claims()
    if sub is None:
        del claims["sub"]
    else:
        claims["sub"] = sub
    assert reason_of(forge(claims)) == "missing_sub"


def test_reason_is_safe_to_log_and_never_contains_the_token() -> None:
    token = issue_token("user-1", "wrong-key-wrong-key-wrong-key-wrong", now=NOW)
    with pytest.raises(InvalidToken) as caught:
        verify_token(token, SECRET, now=NOW)
    assert token not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_empty_secret_is_a_configuration_error_not_a_valid_token() -> None:
    with pytest.raises(ValueError):
        verify_token(forge(valid_claims(), secret="x"), "", now=NOW)
