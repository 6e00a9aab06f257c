"""The program as `pulumi up` runs it: config in, outputs out."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.settings import SettingsError
from infra.stack import main
from tests.infra.conftest import (
    ACCOUNT,
    API_ID,
    JWT_SECRET,
    PROJECT,
    QUEUE_ARN,
    QUEUE_NAME,
    REGION,
    STACK,
    deploy,
    queue_url,
)


def test_outputs() -> None:
    deployed = deploy({"stageName": "prod"})
    assert deployed.outputs == {
        "websocketUrl": f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com/prod",
        "managementEndpoint": f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/prod",
        "topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:notifications-1a2b3c4",
        "sessionsTable": "sessions-1a2b3c4",
        "pendingDeliveriesTable": "pending-deliveries-1a2b3c4",
        "apiId": API_ID,
        "stage": "prod",
        "region": REGION,
        "jwtSecretParameter": f"/{PROJECT}/{STACK}/jwt-secret",
        "publishFunction": f"{PROJECT}-{STACK}-publish",
        "accessLogGroup": f"/aws/apigateway/{PROJECT}-{STACK}/access",
        "deadLetterQueueUrl": queue_url(QUEUE_NAME),
        "deadLetterQueueArn": QUEUE_ARN,
    }


def set_config(values: dict[str, str], secret_keys: list[str]) -> None:
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{key}": value for key, value in values.items()},
        [f"{PROJECT}:{key}" for key in secret_keys],
    )


def test_main_reads_the_stack_config() -> None:
    set_config(
        {"jwtSecret": JWT_SECRET, "stageName": "staging", "logRetentionDays": "7"},
        ["jwtSecret"],
    )
    deployed = deploy(program=main)
    assert deployed.stack.settings.stage_name == "staging"
    assert deployed.stack.settings.log_retention_days == 7
    # Unset keys take their Pulumi.yaml defaults.
    assert deployed.stack.settings.broadcast_enabled is True
    assert deployed.stack.settings.lambda_architecture == "arm64"
    assert deployed.outputs["websocketUrl"].endswith("/staging")
    assert deployed.secret["parameterValue"] is True
    assert JWT_SECRET not in json.dumps(deployed.outputs)


def test_main_requires_the_jwt_secret() -> None:
    set_config({"stageName": "staging"}, [])
    with pytest.raises(pulumi.ConfigMissingError):
        deploy(program=main)


def test_main_rejects_an_invalid_config_value() -> None:
    set_config({"jwtSecret": JWT_SECRET, "logRetentionDays": "10"}, ["jwtSecret"])
    with pytest.raises(SettingsError, match="logRetentionDays"):
        deploy(program=main)


def test_a_short_jwt_secret_fails_without_revealing_it() -> None:
    with pytest.raises(Exception, match="at least 32 characters") as raised:
        deploy(jwt_secret=pulumi.Output.secret("too-short-key"))
    assert "too-short-key" not in str(raised.value)
