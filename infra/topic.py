"""The SNS topic backends publish notifications to, and the publish function's subscription."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from functions import contract
from infra.policies import POLICY_VERSION

# AWS-managed SNS key: encryption at rest with no key to manage. Publishers in the account
# may use it through SNS; AWS services outside the account could not, and none publish here.
TOPIC_KMS_KEY = "alias/aws/sns"


@dataclass(frozen=True)
class NotificationsTopic:
    topic: aws.sns.Topic
    policy: aws.sns.TopicPolicy


def topic_policy(topic_arn: str, account_id: str, partition: str) -> str:
    """Only principals of this account (allowed by their own IAM policies) may publish.

    The policy replaces SNS's default one, which grants the account more than publishing.
    """
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "PublishFromThisAccountOnly",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                }
            ],
        }
    )


def notifications_topic(
    name: str,
    account_id: pulumi.Input[str],
    partition: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> NotificationsTopic:
    topic = aws.sns.Topic(name, kms_master_key_id=TOPIC_KMS_KEY, opts=opts)
    policy = aws.sns.TopicPolicy(
        f"{name}-policy",
        arn=topic.arn,
        policy=pulumi.Output.all(topic.arn, account_id, partition).apply(
            lambda args: topic_policy(*args)
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=topic)),
    )
    return NotificationsTopic(topic=topic, policy=policy)


def publish_subscription(
    name: str,
    topic: aws.sns.Topic,
    function: aws.lambda_.Function,
    broadcast_enabled: bool,
    redrive_policy: pulumi.Input[str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.sns.TopicSubscription:
    """Lambda subscription whose filter policy drops messages that name no target.

    `redrive_policy` names where SNS puts a message it could not deliver to the function.
    """
    return aws.sns.TopicSubscription(
        name,
        topic=topic.arn,
        protocol="lambda",
        endpoint=function.arn,
        filter_policy=json.dumps(contract.subscription_filter_policy(broadcast_enabled)),
        filter_policy_scope=contract.FILTER_POLICY_SCOPE,
        redrive_policy=redrive_policy,
        opts=opts,
    )
