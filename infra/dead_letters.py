"""The dead-letter queue: where a notification goes when it could not be delivered.

Two ways in, one queue:
- SNS could not deliver a message to the publish function (the subscription's redrive policy);
- the publish function received it but failed on every attempt (its on-failure destination:
  Lambda retries an asynchronous invocation, then sends the event with the error).
Both keep the original message, so it can be replayed through the topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.policies import POLICY_VERSION

# SQS's longest retention: the most time to notice, fix and replay.
RETENTION_SECONDS = 14 * 24 * 60 * 60
# Lambda's retries of a failed asynchronous invocation (its maximum) before the destination.
PUBLISH_MAX_RETRY_ATTEMPTS = 2
# A notification older than this is no longer worth a retry; it goes to the queue instead.
PUBLISH_MAX_EVENT_AGE_SECONDS = 60 * 60
SEND_MESSAGE = "sqs:SendMessage"


@dataclass(frozen=True)
class DeadLetterQueue:
    queue: aws.sqs.Queue
    policy: aws.sqs.QueuePolicy


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """SNS may send to the queue, and only on behalf of the notifications topic.

    The publish function needs no statement here: its role allows the send (same account).
    """
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "DeadLettersFromTheTopicOnly",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": SEND_MESSAGE,
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
    )


def dead_letter_queue(
    name: str, topic_arn: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None
) -> DeadLetterQueue:
    queue = aws.sqs.Queue(
        name,
        # SQS-managed keys: encrypted at rest, and SNS can still send (an AWS-managed KMS key
        # would refuse it, because that key's policy cannot be changed to allow SNS).
        sqs_managed_sse_enabled=True,
        message_retention_seconds=RETENTION_SECONDS,
        opts=opts,
    )
    policy = aws.sqs.QueuePolicy(
        f"{name}-policy",
        queue_url=queue.url,
        policy=pulumi.Output.all(queue.arn, topic_arn).apply(lambda args: queue_policy(*args)),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=queue)),
    )
    return DeadLetterQueue(queue=queue, policy=policy)


def redrive_policy(queue_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """A subscription's redrive policy: undeliverable messages go to the queue."""
    return pulumi.Output.from_input(queue_arn).apply(
        lambda arn: json.dumps({"deadLetterTargetArn": arn})
    )


def failure_destination(
    name: str,
    function: aws.lambda_.Function,
    queue: aws.sqs.Queue,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.lambda_.FunctionEventInvokeConfig:
    """Retry a failed asynchronous invocation, then send the event and its error to the queue.

    The function's role must allow sqs:SendMessage on the queue: Lambda sends with it, and
    checks that it may when this configuration is created.
    """
    return aws.lambda_.FunctionEventInvokeConfig(
        name,
        function_name=function.name,
        maximum_retry_attempts=PUBLISH_MAX_RETRY_ATTEMPTS,
        maximum_event_age_in_seconds=PUBLISH_MAX_EVENT_AGE_SECONDS,
        destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                destination=queue.arn
            )
        ),
        opts=opts,
    )
