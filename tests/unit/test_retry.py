"""The publish path's retry policy: which errors, how many attempts, which pauses, what bound."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from functions import aws, pending, retry, sessions
from tests.unit.conftest import add_session


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Operation",
    )


class Script:
    """An operation that fails with the given errors, then returns "ok"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(sleeps: list[float], **overrides: Any) -> retry.Backoff:
    return retry.Backoff(sleep=sleeps.append, random=lambda: 1.0, **overrides)


@pytest.mark.parametrize(
    "error",
    [
        client_error("LimitExceededException", 429),
        client_error("TooManyRequestsException", 429),
        client_error("ProvisionedThroughputExceededException", 400),
        client_error("ThrottlingException", 400),
        client_error("RequestLimitExceeded", 400),
        client_error("InternalServerErrorException", 500),
        client_error("ServiceUnavailable", 503),
        client_error("Anything", 502),
        ReadTimeoutError(endpoint_url="https://example"),
        EndpointConnectionError(endpoint_url="https://example"),
    ],
    ids=lambda error: str(error)[:60],
)
def test_transient_errors_are_retried(error: Exception) -> None:
    sleeps: list[float] = []
    operation = Script(error)
    assert policy(sleeps).call(operation) == "ok"
    assert (operation.calls, len(sleeps)) == (2, 1)


@pytest.mark.parametrize(
    "error",
    [
        client_error("GoneException", 410),
        client_error("PayloadTooLargeException", 413),
        client_error("ForbiddenException", 403),
        client_error("ValidationException", 400),
        client_error("ResourceNotFoundException", 400),
        ValueError("a bug"),
    ],
    ids=str,
)
def test_other_errors_are_raised_at_once(error: Exception) -> None:
    sleeps: list[float] = []
    operation = Script(error)
    with pytest.raises(type(error)):
        policy(sleeps).call(operation)
    assert (operation.calls, sleeps) == (1, [])


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    sleeps: list[float] = []
    errors = [client_error("InternalServerErrorException", 500) for _ in range(10)]
    operation = Script(*errors)
    with pytest.raises(ClientError) as caught:
        policy(sleeps, max_attempts=4).call(operation)
    assert caught.value is errors[3]
    assert operation.calls == 4
    assert len(sleeps) == 3


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    sleeps: list[float] = []
    operation = Script(*[client_error("ThrottlingException", 400) for _ in range(7)])
    policy(sleeps, max_attempts=8, base_seconds=0.1, cap_seconds=2.0).call(operation)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_backoff_is_full_jitter_over_the_exponential_bound() -> None:
    draws = iter([0.5, 0.0, 0.25, 0.999])
    sleeps: list[float] = []
    backoff = retry.Backoff(sleep=sleeps.append, random=lambda: next(draws), base_seconds=0.1)
    backoff.call(Script(*[client_error("ThrottlingException", 400) for _ in range(4)]))
    assert sleeps == pytest.approx([0.05, 0.0, 0.1, 0.7992])


def test_no_retry_whose_pause_would_cut_into_the_safety_margin() -> None:
    clock = {"remaining_ms": 3_500}
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock["remaining_ms"] -= int(seconds * 1000)

    backoff = retry.Backoff(
        sleep=sleep,
        random=lambda: 1.0,
        margin_ms=3_000,
        remaining_ms=lambda: clock["remaining_ms"],
    )
    operation = Script(*[client_error("ThrottlingException", 400) for _ in range(10)])
    with pytest.raises(ClientError):
        backoff.call(operation)
    # 3.5 s left: 0.1 s and 0.2 s fit above the 3 s margin, 0.4 s does not.
    assert sleeps == pytest.approx([0.1, 0.2])
    assert operation.calls == 3


def test_within_takes_the_remaining_time_from_a_lambda_context() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 1234

    bounded = retry.Backoff().within(Context())
    assert bounded.remaining_ms is not None
    assert bounded.remaining_ms() == 1234
    assert retry.Backoff().within(None).remaining_ms is None


def test_publish_path_clients_make_one_attempt_per_call(moto: None) -> None:
    single = aws.client("dynamodb", retried=False)
    assert single is not aws.client("dynamodb")
    assert single.meta.config.retries["total_max_attempts"] == 1
    assert aws.client("dynamodb").meta.config.retries["total_max_attempts"] > 1
    # One connection per posting thread (PUBLISH_CONCURRENCY is 8 here), so none is thrown away.
    assert single.meta.config.max_pool_connections == 8


def test_a_throttled_index_query_is_retried_page_by_page(dynamodb: Any) -> None:
    add_session(dynamodb, "conn-1=", "user-1")
    sleeps: list[float] = []
    client = aws.client("dynamodb", retried=False)
    with Stubber(client) as stub:
        stub.add_response(
            "query",
            {"Items": [{"connectionId": {"S": "conn-1="}}], "LastEvaluatedKey": {"k": {"S": "1"}}},
        )
        stub.add_client_error("query", service_error_code="ProvisionedThroughputExceededException")
        stub.add_client_error("query", service_error_code="ThrottlingException")
        stub.add_response("query", {"Items": [{"connectionId": {"S": "conn-2="}}]})
        found = sessions.connections_of("user-1", backoff=policy(sleeps))
        stub.assert_no_pending_responses()
    assert list(found) == ["conn-1=", "conn-2="]  # page 1 was not read again
    assert sleeps == pytest.approx([0.1, 0.2])


def test_pending_reads_and_writes_are_retried_when_throttled(
    moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENDING_DELIVERIES_TABLE", "pending")
    sleeps: list[float] = []
    with Stubber(aws.client("dynamodb", retried=False)) as stub:
        stub.add_client_error("put_item", service_error_code="RequestLimitExceeded")
        stub.add_response("put_item", {})
        stub.add_client_error(
            "get_item", service_error_code="InternalServerError", http_status_code=500
        )
        stub.add_response(
            "get_item",
            {"Item": {"notificationId": {"S": "n-1"}, "remaining": {"SS": ["a=", "b="]}}},
        )
        pending.save("n-1", {"a=", "b="}, "500 x2", policy(sleeps), now=1_000)
        assert pending.load("n-1", policy(sleeps)) == frozenset({"a=", "b="})
        stub.assert_no_pending_responses()
    assert len(sleeps) == 2
