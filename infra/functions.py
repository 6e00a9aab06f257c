"""The Lambda functions: one code archive, and per handler a log group, a role and a function.

Every function runs the same archive (`functions/` as is) with its own handler, its own
least-privilege role and only the environment variables its handler reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from functions import contract
from infra.policies import assume_role_policy, policy_output, statement
from infra.settings import PROJECT_ROOT, StackSettings

RUNTIME = "python3.12"
# Handlers other than publish do one or two AWS calls; 10 s leaves room for a cold start
# (the authorizer reads SSM then) and stays well under API Gateway's 29 s integration limit.
DEFAULT_TIMEOUT_SECONDS = 10
MAX_FUNCTION_NAME_LENGTH = 64  # Lambda's limit


def code_files(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """Archive path -> file: the top-level `functions/*.py` modules and nothing else.

    Caches, tests and tools stay out, so an unchanged source tree gives an unchanged archive
    (and no needless function update).
    """
    files: dict[str, Path] = {}
    for path in sorted((root / "functions").glob("*.py")):
        if path.name.startswith("test_") or path.name == "conftest.py":
            continue
        files[f"functions/{path.name}"] = path
    if not files:
        raise FileNotFoundError(f"no functions/*.py under {root}")
    return files


def code_archive(root: Path = PROJECT_ROOT) -> pulumi.AssetArchive:
    return pulumi.AssetArchive(
        {name: pulumi.FileAsset(str(path)) for name, path in code_files(root).items()}
    )


def function_name(project: str, stack: str, handler: str) -> str:
    """Explicit name, so the log group `/aws/lambda/<name>` exists before the function does."""
    name = f"{project}-{stack}-{handler}"
    if len(name) > MAX_FUNCTION_NAME_LENGTH:
        raise ValueError(
            f"Lambda name {name!r} exceeds {MAX_FUNCTION_NAME_LENGTH} characters; "
            "use a shorter stack name"
        )
    return name


def log_group_name(function: str) -> str:
    return f"/aws/lambda/{function}"


@dataclass(frozen=True)
class LambdaFunction:
    handler: str
    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    log_group: aws.cloudwatch.LogGroup


def lambda_function(
    handler: str,
    *,
    settings: StackSettings,
    archive: pulumi.Archive,
    statements: Sequence[pulumi.Input[dict[str, Any]]] = (),
    environment: Mapping[str, pulumi.Input[str]] | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> LambdaFunction:
    """One handler of `contract.HANDLERS` with its log group, role and inline policy.

    `statements` are what the handler calls besides writing its own logs.
    """
    name = function_name(pulumi.get_project(), pulumi.get_stack(), handler)
    log_group = aws.cloudwatch.LogGroup(
        f"{handler}-logs",
        name=log_group_name(name),
        retention_in_days=settings.log_retention_days,
    )
    role = aws.iam.Role(
        f"{handler}-role",
        assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
        description=f"Runs the {handler} WebSocket function.",
    )
    # The log group exists (created above), so no logs:CreateLogGroup; streams of this group only.
    writes_logs = log_group.arn.apply(
        lambda arn: statement(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{arn}:*"])
    )
    policy = aws.iam.RolePolicy(
        f"{handler}-policy",
        role=role.id,
        policy=policy_output([writes_logs, *statements]),
    )
    function = aws.lambda_.Function(
        handler,
        name=name,
        runtime=RUNTIME,
        handler=contract.handler_path(handler),
        code=archive,
        role=role.arn,
        architectures=[settings.lambda_architecture],
        memory_size=settings.lambda_memory_mb,
        timeout=timeout,
        environment=(
            aws.lambda_.FunctionEnvironmentArgs(variables=dict(environment))
            if environment
            else None
        ),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(
            log_format="JSON", log_group=log_group.name
        ),
        # The first invocation must already be allowed to log and do its work.
        opts=pulumi.ResourceOptions(depends_on=[policy]),
    )
    return LambdaFunction(
        handler=handler, function=function, role=role, policy=policy, log_group=log_group
    )
