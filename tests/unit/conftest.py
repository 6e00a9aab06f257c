"""Unit fixtures: handlers against moto in-process, with a clean environment per test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from functions import authorizer, aws, contract, management
from local.resources import create_sessions_table
from tests.unit import events

TABLE = "sessions-test"
TTL_SECONDS = 7500
SECRET = "unit-test-signing-key-0123456789abcdef"
SECRET_PARAMETER = "/mentorassist-websocket/test/jwt-secret"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, the handlers' variables, and no endpoint override from the shell
    (a local stack's AWS_ENDPOINT_URL would send calls past moto)."""
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
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, events.MANAGEMENT_ENDPOINT)
    monkeypatch.setenv(contract.ENV_PUBLISH_CONCURRENCY, "8")
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "true")
    monkeypatch.setenv(contract.ENV_JWT_SECRET_PARAMETER, SECRET_PARAMETER)
    monkeypatch.delenv(contract.ENV_JWT_ISSUER, raising=False)
    monkeypatch.delenv(contract.ENV_JWT_AUDIENCE, raising=False)
    aws.reset_clients()
    authorizer.reset_secret_cache()
    yield
    aws.reset_clients()
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


class ScriptedManagementApi:
    """The management API as a fake: answers each post by connection id and records it.

    Hooks the real client's request pipeline (as botocore's Stubber does) but keyed by
    connection id, so it works with posts running concurrently in any order. Answers go
    through botocore's normal error handling, so `management` sees real ClientErrors.
    """

    def __init__(self, answers: dict[str, tuple[int, str]], delay: float = 0.0) -> None:
        self.answers = answers  # connectionId -> (HTTP status, error code); default 200
        self.delay = delay  # seconds each post takes
        self.posts: dict[str, list[bytes]] = {}  # every post made, whatever the answer
        self.delivered: dict[str, list[bytes]] = {}  # the posts answered 2xx
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        client = management.management_client()
        client.meta.events.register(
            "before-parameter-build.apigatewaymanagementapi.PostToConnection", self._remember
        )
        client.meta.events.register(
            "before-call.apigatewaymanagementapi.PostToConnection", self._answer
        )

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["scripted"] = (params["ConnectionId"], params["Data"])

    def _answer(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        connection_id, data = context["scripted"]
        with self._lock:
            self.posts.setdefault(connection_id, []).append(data)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        status, code = self.answer(connection_id)
        with self._lock:
            self.in_flight -= 1
            if status < 300:
                self.delivered.setdefault(connection_id, []).append(data)
        parsed: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": status}}
        if status >= 300:
            parsed["Error"] = {"Code": code, "Message": f"scripted {status}"}
        return AWSResponse(events.MANAGEMENT_ENDPOINT, status, {}, None), parsed

    def answer(self, connection_id: str) -> tuple[int, str]:
        """(HTTP status, error code) for a post to this connection."""
        return self.answers.get(connection_id, (200, ""))


class GatewayManagementApi(ScriptedManagementApi):
    """The management API as API Gateway answers it: a post to a connection in `open` is
    delivered (200); any other id (closed, never opened, still in `$connect`) answers 410."""

    def __init__(self) -> None:
        super().__init__({})
        self.open: set[str] = set()

    def answer(self, connection_id: str) -> tuple[int, str]:
        return (200, "") if connection_id in self.open else (410, "GoneException")


@pytest.fixture
def scripted_management(moto: None) -> Callable[..., ScriptedManagementApi]:
    return ScriptedManagementApi


@pytest.fixture
def gateway(moto: None) -> GatewayManagementApi:
    return GatewayManagementApi()


def moto_posts() -> dict[str, bytes]:
    """What moto's management API received, by connection id (posts are appended)."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends[events.ACCOUNT][events.REGION]
    # moto keys connections by the raw URL path segment ("conn-1%3D" for "conn-1=").
    return {unquote(cid): conn.data for cid, conn in backend.connections.items() if conn.data}
