"""Unit fixtures: handlers against moto in-process, with a clean environment per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions import authorizer, aws, contract, management
from local.resources import create_sessions_table
from tests.unit import events
from tests.unit.management_api import (
    GatewayManagementApi,
    ManagementApiServer,
    ScriptedManagementApi,
)

TABLE = "sessions-test"
TTL_SECONDS = 7500
SECRET = "unit-test-signing-key-0123456789abcdef"
SECRET_PARAMETER = "/mentorassist-websocket/test/jwt-secret"


@pytest.fixture(autouse=True)
def aws_environment(
    monkeypatch: pytest.MonkeyPatch, management_server: ManagementApiServer
) -> Iterator[None]:
    """Fake credentials, the handlers' variables, and no endpoint override from the shell
    (a local stack's AWS_ENDPOINT_URL would send calls past moto); the management API is the
    session's HTTP server."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", events.REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv(contract.ENV_SESSIONS_TABLE, TABLE)
    monkeypatch.setenv(contract.ENV_CONNECTION_TTL_SECONDS, str(TTL_SECONDS))
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, management_server.endpoint)
    monkeypatch.setenv(contract.ENV_PUBLISH_CONCURRENCY, "8")
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "true")
    monkeypatch.setenv(contract.ENV_JWT_SECRET_PARAMETER, SECRET_PARAMETER)
    monkeypatch.delenv(contract.ENV_JWT_ISSUER, raising=False)
    monkeypatch.delenv(contract.ENV_JWT_AUDIENCE, raising=False)
    aws.reset_clients()
    management.close_connections()
    authorizer.reset_secret_cache()
    yield
    aws.reset_clients()
    management.close_connections()
    authorizer.reset_secret_cache()


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


# One session for the tests' own clients: moto resets boto3's default session at every start,
# which would parse the service models again for each test.
_test_session = boto3.session.Session()


@pytest.fixture
def dynamodb(moto: None) -> Any:
    client = _test_session.client("dynamodb", region_name=events.REGION)
    create_sessions_table(client, TABLE)
    return client


@pytest.fixture
def ssm(moto: None) -> Any:
    client = _test_session.client("ssm", region_name=events.REGION)
    client.put_parameter(Name=SECRET_PARAMETER, Value=SECRET, Type="SecureString")
    return client


def session_rows(dynamodb: Any) -> dict[str, dict[str, Any]]:
    """The table as {connectionId: item}, read strongly consistent from the table itself."""
    items = dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {item[contract.CONNECTION_ID]["S"]: item for item in items}


def add_session(dynamodb: Any, connection_id: str, user_id: str) -> None:
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            contract.CONNECTION_ID: {"S": connection_id},
            contract.USER_ID: {"S": user_id},
            contract.CONNECTED_AT: {"S": "2026-12-03T18:00:00.000Z"},
            contract.EXPIRES_AT: {"N": "1796329240"},
        },
    )


@pytest.fixture(scope="session")
def management_server() -> Iterator[ManagementApiServer]:
    server = ManagementApiServer(events.STAGE)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def management_api(management_server: ManagementApiServer) -> ScriptedManagementApi:
    """What answers posts in this test: every connection 200 unless a test scripts otherwise."""
    management_server.script = ScriptedManagementApi({})
    return management_server.script


@pytest.fixture
def scripted_management(
    management_server: ManagementApiServer,
) -> Callable[..., ScriptedManagementApi]:
    """Install a script: `scripted_management({connectionId: (status, code)}, delay=...)`."""

    def install(answers: dict[str, tuple[int, str]], delay: float = 0.0) -> ScriptedManagementApi:
        management_server.script = ScriptedManagementApi(answers, delay)
        return management_server.script

    return install


@pytest.fixture
def gateway(management_server: ManagementApiServer) -> GatewayManagementApi:
    management_server.script = GatewayManagementApi()
    return management_server.script
