"""The local stack's AWS resources, created in the emulator with plain boto3 calls.

Shapes come from `functions.contract`, the same declarations `infra/` gives Pulumi, so the
emulator holds what `pulumi up` would create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions import contract


def create_sessions_table(dynamodb: Any, name: str) -> None:
    """The sessions table: `connectionId` key, `userId` GSI (keys and `connectedAt`), TTL on
    `expiresAt`."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": contract.CONNECTION_ID, "AttributeType": "S"},
            {"AttributeName": contract.USER_ID, "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": contract.CONNECTION_ID, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": contract.USER_INDEX,
                "KeySchema": [{"AttributeName": contract.USER_ID, "KeyType": "HASH"}],
                "Projection": {
                    "ProjectionType": contract.USER_INDEX_PROJECTION,
                    "NonKeyAttributes": list(contract.USER_INDEX_NON_KEY_ATTRIBUTES),
                },
            }
        ],
        SSESpecification={"Enabled": True},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": contract.EXPIRES_AT},
    )


@dataclass(frozen=True)
class DeliveryQueues:
    """The SQS queue standing in for the publish Lambda's SNS subscription, and its DLQ."""

    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    subscription_arn: str


# Invisible this long once received: longer than any publish invocation (Lambda's longest
# timeout), so a message is never handed out twice while an attempt runs. A failed attempt
# sets its message's visibility to the retry delay instead (local.delivery).
SUBSCRIPTION_VISIBILITY_SECONDS = 15 * 60


def create_topic(sns: Any, name: str) -> str:
    """The notifications topic, encrypted with the AWS managed key as on AWS."""
    return sns.create_topic(Name=name, Attributes={"KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]


def create_delivery_queues(
    sqs: Any, sns: Any, *, topic_arn: str, name: str, broadcast_enabled: bool
) -> DeliveryQueues:
    """Subscribe a queue to the topic with the publish subscription's filter policy.

    Not raw delivery: the queue receives the SNS notification document, from which the local
    delivery builds the SNS-shaped Lambda event. The queue has no redrive policy: like
    Lambda's asynchronous invocation, the delivery itself retries a failed event and then
    sends the on-failure record to the dead-letter queue.
    """
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": str(SUBSCRIPTION_VISIBILITY_SECONDS)},
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    subscription_arn = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "FilterPolicy": json.dumps(contract.subscription_filter_policy(broadcast_enabled)),
            "FilterPolicyScope": contract.FILTER_POLICY_SCOPE,
        },
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return DeliveryQueues(queue_url, queue_arn, dlq_url, dlq_arn, subscription_arn)


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def put_jwt_secret(ssm: Any, name: str, secret: str) -> None:
    """The token key as a SecureString, where the authorizer reads it at run time."""
    ssm.put_parameter(Name=name, Value=secret, Type="SecureString", Overwrite=True)


def create_pending_deliveries_table(dynamodb: Any, name: str) -> None:
    """Pending deliveries: `notificationId` key, TTL on `expiresAt`."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": contract.PENDING_NOTIFICATION_ID, "AttributeType": "S"}
        ],
        KeySchema=[{"AttributeName": contract.PENDING_NOTIFICATION_ID, "KeyType": "HASH"}],
        SSESpecification={"Enabled": True},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": contract.EXPIRES_AT},
    )
