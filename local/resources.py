"""The local stack's AWS resources, created in the emulator with plain boto3 calls.

Shapes come from `functions.contract`, the same declarations `infra/` gives Pulumi, so the
emulator holds what `pulumi up` would create.
"""

from __future__ import annotations

from typing import Any

from functions import contract


def create_sessions_table(dynamodb: Any, name: str) -> None:
    """The sessions table: `connectionId` key, `userId` GSI (keys only), TTL on `expiresAt`."""
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
                "Projection": {"ProjectionType": contract.USER_INDEX_PROJECTION},
            }
        ],
        SSESpecification={"Enabled": True},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": contract.EXPIRES_AT},
    )
