"""The dead-letter queue and the two ways into it: SNS redrive and the publish on-failure
destination."""

from __future__ import annotations

import json

from functions import contract
from infra.dead_letters import (
    PUBLISH_MAX_EVENT_AGE_SECONDS,
    PUBLISH_MAX_RETRY_ATTEMPTS,
    RETENTION_SECONDS,
)
from tests.infra.conftest import (
    QUEUE_ARN,
    QUEUE_NAME,
    TOPIC_ARN,
    deploy,
    fn_name,
    queue_url,
    role_grants,
)

QUEUE = "aws:sqs/queue:Queue"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"


def test_one_encrypted_queue_keeping_messages_fourteen_days() -> None:
    deployed = deploy()
    (queue,) = deployed.all(QUEUE).values()
    assert queue.name == "dead-letters"
    assert queue.inputs == {
        "sqsManagedSseEnabled": True,
        "messageRetentionSeconds": 14 * 24 * 60 * 60,
    }
    assert RETENTION_SECONDS == 1_209_600  # SQS's maximum


def test_only_sns_on_behalf_of_the_topic_may_send_to_the_queue() -> None:
    deployed = deploy()
    (policy,) = deployed.all("aws:sqs/queuePolicy:QueuePolicy").values()
    assert policy.inputs["queueUrl"] == queue_url(QUEUE_NAME)
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DeadLettersFromTheTopicOnly",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": QUEUE_ARN,
                "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC_ARN}},
            }
        ],
    }


def test_publish_failures_are_retried_then_sent_to_the_queue() -> None:
    deployed = deploy()
    (config,) = deployed.all(INVOKE_CONFIG).values()
    assert config.name == "publish-failures"
    assert config.inputs == {
        "functionName": fn_name(contract.PUBLISH),
        "maximumRetryAttempts": 2,
        "maximumEventAgeInSeconds": 3600,
        "destinationConfig": {"onFailure": {"destination": QUEUE_ARN}},
    }
    assert (PUBLISH_MAX_RETRY_ATTEMPTS, PUBLISH_MAX_EVENT_AGE_SECONDS) == (2, 3600)


def test_publish_role_may_send_to_that_queue_and_no_other_role_may() -> None:
    deployed = deploy()
    senders = {
        handler
        for handler, grants in role_grants(deployed).items()
        for action, resource in grants
        if action.startswith("sqs:")
    }
    assert senders == {contract.PUBLISH}
    assert {g for g in role_grants(deployed)[contract.PUBLISH] if g[0].startswith("sqs:")} == {
        ("sqs:SendMessage", QUEUE_ARN)
    }


def test_nothing_is_delivered_before_failures_have_somewhere_to_go() -> None:
    deployed = deploy()
    # SNS may deliver as soon as the subscription exists: by then it may dead-letter (queue
    # policy) and handler failures have their destination.
    (subscription,) = deployed.all("aws:sns/topicSubscription:TopicSubscription").values()
    assert {"dead-letters", "dead-letters-policy", "publish-failures"} <= subscription.depends_on
    # Lambda checks the role may send to the destination when the config is created; the
    # function (which the config names) waits for its role's policy.
    (config,) = deployed.all(INVOKE_CONFIG).values()
    assert "publish" in config.depends_on
    assert "publish-policy" in deployed.one("aws:lambda/function:Function", "publish").depends_on
