from __future__ import annotations

import logging
from typing import Any

import pytest

from functions import authorizer, contract
from functions.tokens import issue_token
from tests.unit import events
from tests.unit.conftest import SECRET, SECRET_PARAMETER

pytestmark = pytest.mark.usefixtures("ssm")


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    return authorizer.handler(event, None)


def assert_unauthorized(event: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(event)


def test_valid_token_allows_invoking_exactly_this_method() -> None:
    event = events.authorizer_event(token=issue_token("user-7", SECRET))
    result = authorize(event)
    assert result == {
        "principalId": "user-7",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
            ],
        },
        "context": {"userId": "user-7"},
    }
    assert contract.AUTHORIZER_CONTEXT_USER_ID in result["context"]


def test_missing_token_is_unauthorized() -> None:
    assert_unauthorized(events.authorizer_event())


def test_empty_token_is_unauthorized() -> None:
    assert_unauthorized(events.authorizer_event(token=""))


def test_token_signed_with_another_key_is_unauthorized() -> None:
    assert_unauthorized(events.authorizer_event(token=issue_token("u", "not-the-key" * 4)))


def test_expired_token_is_unauthorized() -> None:
    assert_unauthorized(events.authorizer_event(token=issue_token("u", SECRET, now=1_000_000)))


def test_garbage_token_is_unauthorized() -> None:
    assert_unauthorized(events.authorizer_event(token="definitely-not-a-jwt"))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer {token}"},
        {"Sec-WebSocket-Protocol": "{token}"},
        {"token": "{token}"},
    ],
)
def test_token_outside_the_query_string_is_ignored(headers: dict[str, str]) -> None:
    token = issue_token("user-7", SECRET)
    event = events.authorizer_event(
        headers={name: value.format(token=token) for name, value in headers.items()}
    )
    assert_unauthorized(event)


def test_user_id_comes_from_the_token_not_a_query_parameter() -> None:
    event = events.authorizer_event(
        token=issue_token("user-7", SECRET), query={"userId": "someone-else"}
    )
    assert authorize(event)["context"] == {"userId": "user-7"}


def test_issuer_and_audience_are_enforced_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_JWT_ISSUER, "https://id.example")
    monkeypatch.setenv(contract.ENV_JWT_AUDIENCE, "mentorassist")
    good = issue_token("u1", SECRET, issuer="https://id.example", audience="mentorassist")
    assert authorize(events.authorizer_event(token=good))["principalId"] == "u1"
    assert_unauthorized(events.authorizer_event(token=issue_token("u1", SECRET)))
    wrong_aud = issue_token("u1", SECRET, issuer="https://id.example", audience="other")
    assert_unauthorized(events.authorizer_event(token=wrong_aud))


def test_empty_issuer_and_audience_mean_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_JWT_ISSUER, "")
    monkeypatch.setenv(contract.ENV_JWT_AUDIENCE, "")
    token = issue_token("u1", SECRET, issuer="anyone", audience="anything")
    assert authorize(events.authorizer_event(token=token))["principalId"] == "u1"


def test_secret_is_read_once_per_container(ssm: Any) -> None:
    authorize(events.authorizer_event(token=issue_token("u1", SECRET)))
    ssm.put_parameter(
        Name=SECRET_PARAMETER, Value="rotated-" * 5, Type="SecureString", Overwrite=True
    )
    # Still the key read at the first invocation: SSM is not called again.
    assert (
        authorize(events.authorizer_event(token=issue_token("u1", SECRET)))["principalId"] == "u1"
    )
    authorizer.reset_secret_cache()
    assert_unauthorized(events.authorizer_event(token=issue_token("u1", SECRET)))


def test_missing_secret_parameter_is_an_error_not_an_allow(ssm: Any) -> None:
    ssm.delete_parameter(Name=SECRET_PARAMETER)
    with pytest.raises(Exception) as caught:
        authorize(events.authorizer_event(token=issue_token("u1", SECRET)))
    assert str(caught.value) != "Unauthorized"
    assert "ParameterNotFound" in type(caught.value).__name__ + str(caught.value)


def test_refusal_logs_the_reason_but_never_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = issue_token("u1", SECRET, now=1_000_000)
    with caplog.at_level(logging.INFO, logger="functions.authorizer"):
        assert_unauthorized(events.authorizer_event(token=token))
    [record] = caplog.records
    assert record.reason == "expired"
    logged = record.getMessage() + repr(record.__dict__)
    assert token not in logged
    assert SECRET not in logged
