from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from functions import aws, contract, management, retry
from tests.unit import events
from tests.unit.conftest import moto_posts


def test_client_uses_the_configured_endpoint_and_pool(
    moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_PUBLISH_CONCURRENCY, "17")
    client = management.management_client()
    assert client.meta.endpoint_url == events.MANAGEMENT_ENDPOINT
    assert client.meta.config.max_pool_connections == 17
    assert management.management_client() is client


def test_post_reaches_the_connection(moto: None) -> None:
    management.post("conn-1=", b'{"hello":"world"}')
    assert moto_posts() == {"conn-1=": b'{"hello":"world"}'}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (410, "GoneException", management.ConnectionGone),
        (413, "PayloadTooLargeException", management.PayloadTooLarge),
        (403, "ForbiddenException", management.DeliveryFailed),
        (500, "InternalServerErrorException", management.DeliveryFailed),
    ],
)
def test_api_errors_become_one_exception_family(
    moto: None, status: int, code: str, kind: type[management.DeliveryFailed]
) -> None:
    with Stubber(management.management_client()) as stub:
        stub.add_client_error(
            "post_to_connection",
            service_error_code=code,
            http_status_code=status,
            expected_params={"ConnectionId": "conn-1=", "Data": b"x"},
        )
        with pytest.raises(management.DeliveryFailed) as caught:
            management.post("conn-1=", b"x", retry.Backoff(max_attempts=1))
    assert type(caught.value) is kind
    assert (caught.value.connection_id, caught.value.status, caught.value.code) == (
        "conn-1=",
        status,
        code,
    )
    assert caught.value.transient is (status >= 500)


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
