"""The whole stack: validated settings in, resources and outputs out.

`build_stack` is what `__main__.py` runs and what the Pulumi-mock tests call; `main` adds
reading the stack's config and exporting the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from functions import contract
from infra.api import WebSocketApi, websocket_api
from infra.dead_letters import (
    SEND_MESSAGE,
    DeadLetterQueue,
    dead_letter_queue,
    failure_destination,
    redrive_policy,
)
from infra.functions import LambdaFunction, code_archive, lambda_function
from infra.pending_deliveries import pending_deliveries_table
from infra.policies import statement
from infra.secret import jwt_secret_parameter
from infra.sessions_table import sessions_table
from infra.settings import StackSettings, settings_from
from infra.topic import NotificationsTopic, notifications_topic, publish_subscription

JWT_SECRET_KEY = "jwtSecret"
MIN_JWT_SECRET_LENGTH = 32  # HS256 keys shorter than the hash output weaken the signature


@dataclass(frozen=True)
class Stack:
    settings: StackSettings
    table: aws.dynamodb.Table
    pending_deliveries: aws.dynamodb.Table
    jwt_secret: aws.ssm.Parameter
    topic: NotificationsTopic
    functions: dict[str, LambdaFunction]  # by handler
    api: WebSocketApi
    subscription: aws.sns.TopicSubscription
    sns_permission: aws.lambda_.Permission
    dead_letters: DeadLetterQueue
    publish_failures: aws.lambda_.FunctionEventInvokeConfig
    outputs: dict[str, pulumi.Output[str]]


def _checked_secret(value: str) -> str:
    # The message names the rule, never the value.
    if len(value) < MIN_JWT_SECRET_LENGTH:
        raise ValueError(f"{JWT_SECRET_KEY} must be at least {MIN_JWT_SECRET_LENGTH} characters")
    return value


def build_stack(settings: StackSettings, jwt_secret: pulumi.Input[str]) -> Stack:
    """Create every resource of one stack.

    `jwt_secret` should be a secret Output (`Config.require_secret`); it is wrapped as secret
    anyway and goes to the SSM parameter only.
    """
    partition = aws.get_partition_output().partition
    account_id = aws.get_caller_identity_output().account_id
    region = aws.get_region_output().region

    table = sessions_table("sessions")
    pending = pending_deliveries_table("pending-deliveries")
    secret = pulumi.Output.secret(jwt_secret).apply(_checked_secret)
    parameter = jwt_secret_parameter("jwt-secret", secret)
    topic = notifications_topic("notifications", account_id, partition)
    dead_letters = dead_letter_queue("dead-letters", topic.topic.arn)
    archive = code_archive()

    def make(handler: str, **kwargs: Any) -> LambdaFunction:
        return lambda_function(handler, settings=settings, archive=archive, **kwargs)

    functions = {
        contract.AUTHORIZER: make(
            contract.AUTHORIZER,
            # No kms:Decrypt: the parameter uses the AWS-managed aws/ssm key (see secret.py).
            statements=[parameter.arn.apply(lambda arn: statement(["ssm:GetParameter"], [arn]))],
            environment={
                contract.ENV_JWT_SECRET_PARAMETER: parameter.name,
                # Optional checks: only set when configured, as the handler expects.
                **({contract.ENV_JWT_ISSUER: settings.jwt_issuer} if settings.jwt_issuer else {}),
                **(
                    {contract.ENV_JWT_AUDIENCE: settings.jwt_audience}
                    if settings.jwt_audience
                    else {}
                ),
            },
        ),
        contract.CONNECT: make(
            contract.CONNECT,
            statements=[table.arn.apply(lambda arn: statement(["dynamodb:PutItem"], [arn]))],
            environment={
                contract.ENV_SESSIONS_TABLE: table.name,
                contract.ENV_CONNECTION_TTL_SECONDS: str(settings.connection_ttl_seconds),
            },
        ),
        contract.DISCONNECT: make(
            contract.DISCONNECT,
            statements=[table.arn.apply(lambda arn: statement(["dynamodb:DeleteItem"], [arn]))],
            environment={contract.ENV_SESSIONS_TABLE: table.name},
        ),
        # Answers pings through its return value (a two-way route): logs only.
        contract.DEFAULT: make(contract.DEFAULT),
    }
    api = websocket_api(
        "websocket",
        settings=settings,
        handlers={handler: fn.function for handler, fn in functions.items()},
        partition=partition,
    )

    publish_statements = [
        table.arn.apply(
            lambda arn: statement(["dynamodb:Query"], [f"{arn}/index/{contract.USER_INDEX}"])
        ),
        # A 410 Gone from the management API removes the stale row: in batches when the
        # lookup said how old the row is, one conditional delete each otherwise.
        table.arn.apply(
            lambda arn: statement(["dynamodb:BatchWriteItem", "dynamodb:DeleteItem"], [arn])
        ),
    ]
    if settings.broadcast_enabled:
        # Broadcast reads every connection, and only then is a table scan needed.
        publish_statements.append(table.arn.apply(lambda arn: statement(["dynamodb:Scan"], [arn])))
    publish_statements.append(
        pulumi.Output.all(api.api.execution_arn, api.stage.name).apply(
            lambda args: statement(
                ["execute-api:ManageConnections"], [f"{args[0]}/{args[1]}/POST/@connections/*"]
            )
        )
    )
    # What a retried event still owes: read, written and removed by notification id.
    publish_statements.append(
        pending.arn.apply(
            lambda arn: statement(
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"], [arn]
            )
        )
    )
    # The handler dead-letters what no retry can fix, and Lambda sends an event that failed
    # every attempt to the on-failure destination, both with the function's role.
    publish_statements.append(
        dead_letters.queue.arn.apply(lambda arn: statement([SEND_MESSAGE], [arn]))
    )
    functions[contract.PUBLISH] = make(
        contract.PUBLISH,
        statements=publish_statements,
        environment={
            contract.ENV_SESSIONS_TABLE: table.name,
            contract.ENV_MANAGEMENT_ENDPOINT: api.management_endpoint,
            contract.ENV_PUBLISH_CONCURRENCY: str(settings.publish_concurrency),
            contract.ENV_BROADCAST_ENABLED: "true" if settings.broadcast_enabled else "false",
            contract.ENV_PENDING_DELIVERIES_TABLE: pending.name,
            contract.ENV_DEAD_LETTER_QUEUE_URL: dead_letters.queue.url,
        },
        timeout=settings.publish_timeout_seconds,
    )
    publish = functions[contract.PUBLISH].function
    sns_permission = aws.lambda_.Permission(
        "publish-sns-invoke",
        action="lambda:InvokeFunction",
        function=publish.name,
        principal="sns.amazonaws.com",
        source_arn=topic.topic.arn,
    )
    # Created before the subscription, so no failure from the first delivery on is lost.
    publish_failures = failure_destination("publish-failures", publish, dead_letters.queue)
    subscription = publish_subscription(
        "publish-subscription",
        topic.topic,
        publish,
        settings.broadcast_enabled,
        redrive_policy=redrive_policy(dead_letters.queue.arn),
        # SNS may deliver as soon as the subscription exists (and dead-letter right away).
        opts=pulumi.ResourceOptions(
            depends_on=[sns_permission, dead_letters.policy, publish_failures]
        ),
    )

    outputs: dict[str, pulumi.Output[str]] = {
        "websocketUrl": api.websocket_url,
        "managementEndpoint": api.management_endpoint,
        "topicArn": topic.topic.arn,
        "sessionsTable": table.name,
        "pendingDeliveriesTable": pending.name,
        "apiId": api.api.id,
        "stage": api.stage.name,
        "region": region,
        "jwtSecretParameter": parameter.name,
        "publishFunction": publish.name,
        "accessLogGroup": api.access_log_group.name,
        "deadLetterQueueUrl": dead_letters.queue.url,
        "deadLetterQueueArn": dead_letters.queue.arn,
    }
    return Stack(
        settings=settings,
        table=table,
        pending_deliveries=pending,
        jwt_secret=parameter,
        topic=topic,
        functions=functions,
        api=api,
        subscription=subscription,
        sns_permission=sns_permission,
        dead_letters=dead_letters,
        publish_failures=publish_failures,
        outputs=outputs,
    )


def settings_from_config(config: pulumi.Config | None = None) -> StackSettings:
    """The stack's settings; unset keys take their Pulumi.yaml default."""
    config = config or pulumi.Config()
    return settings_from(config.get)


def main() -> Stack:
    """The Pulumi program: read the stack config, build, export the outputs."""
    config = pulumi.Config()
    stack = build_stack(settings_from_config(config), config.require_secret(JWT_SECRET_KEY))
    for name, value in stack.outputs.items():
        pulumi.export(name, value)
    return stack
