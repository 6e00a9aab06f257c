"""Posting through the management API: the request AWS expects, and one exception family."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from urllib3.util.wait import wait_for_read

from functions import aws, contract, management, retry
from tests.unit import events
from tests.unit.management_api import (
    ManagementApiServer,
    ScriptedManagementApi,
    self_signed_certificate,
)


def test_post_reaches_the_connection(management_api: ScriptedManagementApi) -> None:
    management.post("conn-1=", b'{"hello":"world"}')
    assert management_api.refused == []
    assert management_api.delivered == {"conn-1=": [b'{"hello":"world"}']}
    assert management_api.refused == []


def test_a_post_is_the_request_the_sdk_sends(management_server: ManagementApiServer) -> None:
    """Same path (the connection id percent-encoded), body and signed headers as boto3's
    `post_to_connection`, and the same signature when signed at the same instant."""
    seen: list[tuple[str, dict[str, str], bytes]] = []
    real_handle = management_server.handle

    def record(method: str, path: str, headers: Any, body: bytes) -> tuple[int, str]:
        seen.append((path, {name.lower(): value for name, value in headers.items()}, body))
        return real_handle(method, path, headers, body)

    management_server.handle = record  # type: ignore[method-assign]
    try:
        connection_id = "L0SM9c/OFv+HcCIhw="  # '/', '+' and '=' all occur in real ids
        sdk = boto3.client("apigatewaymanagementapi", endpoint_url=management_server.endpoint)
        sdk.post_to_connection(ConnectionId=connection_id, Data=b'{"a":1}')
        management.post(connection_id, b'{"a":1}')
    finally:
        del management_server.handle
    (sdk_path, sdk_headers, sdk_body), (our_path, our_headers, our_body) = seen
    assert our_path == sdk_path == "/dev/@connections/L0SM9c%2FOFv%2BHcCIhw%3D"
    assert our_body == sdk_body
    assert _signed_headers(our_headers) == _signed_headers(sdk_headers) == "host;x-amz-date"
    if our_headers["x-amz-date"] == sdk_headers["x-amz-date"]:  # same second: same signature
        assert _signature(our_headers) == _signature(sdk_headers)
    assert management_server.script.delivered == {connection_id: [b'{"a":1}', b'{"a":1}']}
    assert management_server.script.refused == []


def test_a_session_token_is_sent_and_signed(
    management_api: ScriptedManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda's credentials are temporary: without the token AWS refuses every post.
    monkeypatch.setenv("AWS_SESSION_TOKEN", "lambda-session-token")
    aws.reset_clients()
    management.post("conn-1=", b"x")
    assert management_api.delivered == {"conn-1=": [b"x"]}


def test_a_request_signed_for_another_region_is_refused(
    management_api: ScriptedManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake checks signatures as AWS does; this shows it would catch a wrong one.
    real_region = aws.region
    monkeypatch.setattr(aws, "region", lambda: "eu-west-1")
    with pytest.raises(management.DeliveryFailed) as caught:
        management.post("conn-1=", b"x", retry.Backoff(max_attempts=1))
    monkeypatch.setattr(aws, "region", real_region)
    assert (caught.value.status, caught.value.code, caught.value.transient) == (
        403,
        "ForbiddenException",
        False,
    )
    assert management_api.refused == ["signed for execute-api in eu-west-1"]
    assert management_api.posts == {}


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagementApiServer]:
    certificate = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    server = ManagementApiServer(events.STAGE, tls=certificate)
    yield server
    server.close()


def test_posts_go_over_https_to_a_trusted_server(
    https_server: ManagementApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusting = ssl.create_default_context(cafile=str(https_server.certificate))
    monkeypatch.setattr(management, "_tls", lambda: trusting)
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, https_server.endpoint)
    https_server.script = ScriptedManagementApi({})
    management.post("conn-1=", b"over tls")
    management.post("conn-1=", b"again, same connection")
    assert https_server.script.delivered == {"conn-1=": [b"over tls", b"again, same connection"]}
    assert https_server.script.refused == []


def test_a_server_whose_certificate_is_not_trusted_gets_nothing(
    https_server: ManagementApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default trust store (botocore's CA bundle) does not know the self-signed server.
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, https_server.endpoint)
    https_server.script = ScriptedManagementApi({})
    with pytest.raises(management.DeliveryFailed) as caught:
        management.post("conn-1=", b"secret", retry.Backoff(max_attempts=1))
    assert (caught.value.status, caught.value.code) == (None, "SSLCertVerificationError")
    assert https_server.script.posts == {}


def test_a_connection_the_server_closed_while_idle_is_reopened(
    management_api: ScriptedManagementApi, management_server: ManagementApiServer
) -> None:
    management.post("conn-1=", b"first")
    origin = urlsplit(management_server.endpoint)
    kept = management._thread_connections.by_origin[(origin.scheme, origin.netloc)]
    management_server.drop_idle_connections()
    assert wait_for_read(kept._connection.sock, timeout=5)  # the server's close has arrived
    management.post("conn-1=", b"second", retry.Backoff(max_attempts=1))  # no retry needed
    assert management_api.delivered == {"conn-1=": [b"first", b"second"]}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (410, "GoneException", management.ConnectionGone),
        (413, "PayloadTooLargeException", management.PayloadTooLarge),
        (403, "ForbiddenException", management.DeliveryFailed),
        (429, "LimitExceededException", management.DeliveryFailed),
        (500, "InternalServerErrorException", management.DeliveryFailed),
    ],
)
def test_api_errors_become_one_exception_family(
    scripted_management: Any, status: int, code: str, kind: type[management.DeliveryFailed]
) -> None:
    api = scripted_management({"conn-1=": (status, code)})
    with pytest.raises(management.DeliveryFailed) as caught:
        management.post("conn-1=", b"x", retry.Backoff(max_attempts=1))
    assert type(caught.value) is kind
    assert (caught.value.connection_id, caught.value.status, caught.value.code) == (
        "conn-1=",
        status,
        code,
    )
    assert caught.value.transient is (status == 429 or status >= 500)
    assert api.posts == {"conn-1=": [b"x"]}


def test_an_endpoint_that_does_not_answer_is_a_transient_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, "http://127.0.0.1:9/dev")  # refused
    with pytest.raises(management.DeliveryFailed) as caught:
        management.post("conn-1=", b"x", retry.Backoff(max_attempts=1))
    assert (caught.value.status, caught.value.transient) == (None, True)


def test_transient_failures_are_retried_with_a_fresh_signature(
    scripted_management: Any,
) -> None:
    api = scripted_management({"conn-1=": [(500, "InternalServerErrorException")] * 2})
    pauses: list[float] = []
    management.post("conn-1=", b"x", retry.Backoff(sleep=pauses.append, random=lambda: 1.0))
    assert api.posts == {"conn-1=": [b"x", b"x", b"x"]}
    assert api.delivered == {"conn-1=": [b"x"]}
    assert pauses == [0.1, 0.2]
    assert api.refused == []


def test_missing_endpoint_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.ENV_MANAGEMENT_ENDPOINT)
    with pytest.raises(RuntimeError, match=contract.ENV_MANAGEMENT_ENDPOINT):
        management.post("conn-1=", b"x")


def test_clients_are_cached_until_reset() -> None:
    first = aws.client("dynamodb")
    assert aws.client("dynamodb") is first
    aws.reset_clients()
    assert aws.client("dynamodb") is not first


def test_standard_endpoint_variables_reach_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    # How the local stack points the unchanged handlers at its emulator.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:4599")
    aws.reset_clients()
    clients: dict[str, Any] = {name: aws.client(name) for name in ("dynamodb", "ssm")}
    assert clients["dynamodb"].meta.endpoint_url == "http://127.0.0.1:4566"
    assert clients["ssm"].meta.endpoint_url == "http://127.0.0.1:4599"


def _signed_headers(headers: dict[str, str]) -> str:
    return headers["authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0]


def _signature(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]
