"""The DynamoDB sessions table: one row per open connection, found by user through a GSI."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from functions import contract


def sessions_table(name: str, opts: pulumi.ResourceOptions | None = None) -> aws.dynamodb.Table:
    """Keys, index and TTL come from `functions.contract` (the local stack reads the same)."""
    return aws.dynamodb.Table(
        name,
        # Connections come and go in bursts; on-demand needs no capacity planning.
        billing_mode="PAY_PER_REQUEST",
        hash_key=contract.CONNECTION_ID,
        attributes=[
            aws.dynamodb.TableAttributeArgs(name=contract.CONNECTION_ID, type="S"),
            aws.dynamodb.TableAttributeArgs(name=contract.USER_ID, type="S"),
        ],
        global_secondary_indexes=[
            aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=contract.USER_INDEX,
                # key_schemas, not the deprecated hash_key, for the index key.
                key_schemas=[
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                        attribute_name=contract.USER_ID, key_type="HASH"
                    )
                ],
                projection_type=contract.USER_INDEX_PROJECTION,
                non_key_attributes=list(contract.USER_INDEX_NON_KEY_ATTRIBUTES),
            )
        ],
        # Rows of connections whose $disconnect never ran expire on their own.
        ttl=aws.dynamodb.TableTtlArgs(attribute_name=contract.EXPIRES_AT, enabled=True),
        server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        opts=opts,
    )
