"""Sessions table, notifications topic, the publish subscription and the JWT secret."""

from __future__ import annotations

import json

import pytest

from functions import contract
from tests.infra.conftest import (
    ACCOUNT,
    JWT_SECRET,
    PROJECT,
    QUEUE_ARN,
    REGION,
    STACK,
    TOPIC_ARN,
    deploy,
)


def test_sessions_table_shape() -> None:
    deployed = deploy()
    assert set(deployed.all("aws:dynamodb/table:Table")) == {"sessions", "pending-deliveries"}
    table = deployed.one("aws:dynamodb/table:Table", "sessions")
    assert table.inputs == {
        "billingMode": "PAY_PER_REQUEST",
        "hashKey": contract.CONNECTION_ID,
        "attributes": [
            {"name": contract.CONNECTION_ID, "type": "S"},
            {"name": contract.USER_ID, "type": "S"},
        ],
        "globalSecondaryIndexes": [
            {
                "name": contract.USER_INDEX,
                "keySchemas": [{"attributeName": contract.USER_ID, "keyType": "HASH"}],
                "projectionType": "INCLUDE",
                "nonKeyAttributes": [contract.CONNECTED_AT],
            }
        ],
        "ttl": {"attributeName": contract.EXPIRES_AT, "enabled": True},
        "serverSideEncryption": {"enabled": True},
        "pointInTimeRecovery": {"enabled": True},
    }


def test_pending_deliveries_table_shape() -> None:
    deployed = deploy()
    table = deployed.one("aws:dynamodb/table:Table", "pending-deliveries")
    assert table.inputs == {
        "billingMode": "PAY_PER_REQUEST",
        "hashKey": contract.PENDING_NOTIFICATION_ID,
        "attributes": [{"name": contract.PENDING_NOTIFICATION_ID, "type": "S"}],
        "ttl": {"attributeName": contract.EXPIRES_AT, "enabled": True},
        "serverSideEncryption": {"enabled": True},
        "pointInTimeRecovery": {"enabled": True},
    }


def test_topic_is_encrypted_and_only_this_account_may_publish() -> None:
    deployed = deploy()
    (topic,) = deployed.all("aws:sns/topic:Topic").values()
    assert topic.inputs == {"kmsMasterKeyId": "alias/aws/sns"}
    (policy,) = deployed.all("aws:sns/topicPolicy:TopicPolicy").values()
    assert policy.inputs["arn"] == TOPIC_ARN
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {
            "Sid": "PublishFromThisAccountOnly",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sns:Publish",
            "Resource": TOPIC_ARN,
        }
    ]


@pytest.mark.parametrize("broadcast", [True, False])
def test_publish_subscription_filters_on_message_attributes(broadcast: bool) -> None:
    deployed = deploy({"broadcastEnabled": str(broadcast).lower()})
    (subscription,) = deployed.all("aws:sns/topicSubscription:TopicSubscription").values()
    inputs = subscription.inputs
    assert inputs["topic"] == TOPIC_ARN
    assert inputs["protocol"] == "lambda"
    assert inputs["endpoint"] == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PROJECT}-{STACK}-publish"
    )
    assert json.loads(inputs["filterPolicy"]) == contract.subscription_filter_policy(broadcast)
    assert inputs["filterPolicyScope"] == contract.FILTER_POLICY_SCOPE
    # What SNS cannot deliver to the function goes to the dead-letter queue.
    assert json.loads(inputs["redrivePolicy"]) == {"deadLetterTargetArn": QUEUE_ARN}
    assert set(inputs) == {
        "topic",
        "protocol",
        "endpoint",
        "filterPolicy",
        "filterPolicyScope",
        "redrivePolicy",
    }


def test_sns_may_invoke_publish_from_the_topic_only() -> None:
    deployed = deploy()
    permission = deployed.one("aws:lambda/permission:Permission", "publish-sns-invoke")
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": f"{PROJECT}-{STACK}-publish",
        "principal": "sns.amazonaws.com",
        "sourceArn": TOPIC_ARN,
    }


def test_jwt_secret_is_a_secure_string_kept_secret() -> None:
    deployed = deploy()
    (parameter,) = deployed.all("aws:ssm/parameter:Parameter").values()
    assert parameter.inputs["name"] == contract.jwt_secret_parameter_name(PROJECT, STACK)
    assert parameter.inputs["type"] == "SecureString"
    assert "keyId" not in parameter.inputs  # the AWS-managed aws/ssm key
    # Registered as a secret: the engine gets the value wrapped in Pulumi's secret signature.
    value = parameter.inputs["value"]
    assert isinstance(value, dict)
    assert value["value"] == JWT_SECRET
    assert "4dabf18193072939515e22adb298388d" in value
    assert deployed.secret["parameterValue"] is True


def test_jwt_secret_reaches_no_function_environment_and_no_output() -> None:
    deployed = deploy()
    for registered in deployed.mocks.resources:
        if registered.typ == "aws:ssm/parameter:Parameter":
            continue
        assert JWT_SECRET not in json.dumps(registered.inputs, default=str), registered.name
    assert JWT_SECRET not in json.dumps(deployed.outputs)
    assert not any(secret for name, secret in deployed.secret.items() if name != "parameterValue")


def test_a_plain_string_secret_is_still_stored_as_secret() -> None:
    deployed = deploy(jwt_secret=JWT_SECRET)
    assert deployed.secret["parameterValue"] is True
