"""The pending-deliveries table: what a notification is still owed after a failed attempt.

The publish function writes an item only when a notification reached some but not all of its
connections, so the retried invocation posts to the remainder instead of fanning out again.
Key and TTL attribute come from `functions.contract` (the local stack creates the same table).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from functions import contract


def pending_deliveries_table(
    name: str, opts: pulumi.ResourceOptions | None = None
) -> aws.dynamodb.Table:
    return aws.dynamodb.Table(
        name,
        billing_mode="PAY_PER_REQUEST",
        hash_key=contract.PENDING_NOTIFICATION_ID,
        attributes=[
            aws.dynamodb.TableAttributeArgs(name=contract.PENDING_NOTIFICATION_ID, type="S")
        ],
        # Items outlive every retry of their event, then expire on their own.
        ttl=aws.dynamodb.TableTtlArgs(attribute_name=contract.EXPIRES_AT, enabled=True),
        server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
        # Like every table of the stack: an accidental delete or overwrite during an incident can
        # be undone (the items say which connections still miss a notification).
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        opts=opts,
    )
