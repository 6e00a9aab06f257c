"""IAM policy documents as plain data, so tests can parse and compare them exactly.

Every statement names its resources; a `*` resource would make the least-privilege claim of
the stack untestable, so `statement()` refuses one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi

POLICY_VERSION = "2012-10-17"


def statement(actions: Sequence[str], resources: Sequence[str]) -> dict[str, Any]:
    """An Allow statement; resources must be concrete ARNs (no bare `*`)."""
    if not actions or not resources:
        raise ValueError("a statement needs at least one action and one resource")
    if any(resource == "*" for resource in resources):
        raise ValueError("refusing a '*' resource: name the ARN")
    return {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def policy_document(statements: Sequence[dict[str, Any]]) -> str:
    """The JSON text of an identity policy holding `statements`."""
    return json.dumps({"Version": POLICY_VERSION, "Statement": list(statements)})


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service (e.g. lambda.amazonaws.com) assume a role."""
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def policy_output(statements: Sequence[pulumi.Input[dict[str, Any]]]) -> pulumi.Output[str]:
    """`policy_document` over statements whose ARNs are still Outputs."""
    return pulumi.Output.all(*statements).apply(policy_document)
