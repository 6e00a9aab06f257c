"""Lambda functions: settings, environment, code archive and least-privilege roles."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest

from functions import contract
from infra.functions import code_archive, code_files, function_name
from infra.policies import statement
from infra.settings import PROJECT_ROOT
from tests.infra.conftest import (
    API_ID,
    PARAMETER,
    PROJECT,
    QUEUE_NAME,
    REGION,
    deploy,
    expected_grants,
    fn_name,
    queue_url,
    role_grants,
)

FUNCTION = "aws:lambda/function:Function"


def test_one_function_per_handler_with_configured_settings() -> None:
    deployed = deploy(
        {
            "lambdaArchitecture": "x86_64",
            "lambdaMemoryMb": "512",
            "publishTimeoutSeconds": "120",
            "logRetentionDays": "30",
        }
    )
    functions = deployed.all(FUNCTION)
    assert set(functions) == set(contract.HANDLERS)
    for handler, registered in functions.items():
        inputs = registered.inputs
        assert inputs["name"] == fn_name(handler)
        assert inputs["runtime"] == "python3.12"
        assert inputs["handler"] == contract.handler_path(handler)
        assert inputs["architectures"] == ["x86_64"]
        assert inputs["memorySize"] == 512
        assert inputs["loggingConfig"] == {
            "logFormat": "JSON",
            "logGroup": f"/aws/lambda/{fn_name(handler)}",
        }
        role = deployed.one("aws:iam/role:Role", f"{handler}-role")
        assert inputs["role"] == role.outputs["arn"]
        log_group = deployed.one("aws:cloudwatch/logGroup:LogGroup", f"{handler}-logs")
        assert log_group.inputs == {
            "name": f"/aws/lambda/{fn_name(handler)}",
            "retentionInDays": 30,
        }
    assert functions[contract.PUBLISH].inputs["timeout"] == 120


def environments(config: dict[str, str] | None = None) -> dict[str, dict[str, str] | None]:
    deployed = deploy(config)
    return {
        handler: (registered.inputs.get("environment") or {}).get("variables")
        for handler, registered in deployed.all(FUNCTION).items()
    }


def test_each_function_gets_only_the_environment_it_reads() -> None:
    env = environments({"connectionTtlSeconds": "7300", "publishConcurrency": "8"})
    assert env == {
        contract.AUTHORIZER: {contract.ENV_JWT_SECRET_PARAMETER: PARAMETER},
        contract.CONNECT: {
            contract.ENV_SESSIONS_TABLE: "sessions-1a2b3c4",
            contract.ENV_CONNECTION_TTL_SECONDS: "7300",
        },
        contract.DISCONNECT: {contract.ENV_SESSIONS_TABLE: "sessions-1a2b3c4"},
        contract.DEFAULT: None,
        contract.PUBLISH: {
            contract.ENV_SESSIONS_TABLE: "sessions-1a2b3c4",
            contract.ENV_MANAGEMENT_ENDPOINT: (
                f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/dev"
            ),
            contract.ENV_PUBLISH_CONCURRENCY: "8",
            contract.ENV_BROADCAST_ENABLED: "true",
            contract.ENV_PENDING_DELIVERIES_TABLE: "pending-deliveries-1a2b3c4",
            contract.ENV_DEAD_LETTER_QUEUE_URL: queue_url(QUEUE_NAME),
        },
    }


def test_authorizer_gets_issuer_and_audience_when_configured() -> None:
    env = environments({"jwtIssuer": "https://id.example", "jwtAudience": "mentorassist"})
    assert env[contract.AUTHORIZER] == {
        contract.ENV_JWT_SECRET_PARAMETER: PARAMETER,
        contract.ENV_JWT_ISSUER: "https://id.example",
        contract.ENV_JWT_AUDIENCE: "mentorassist",
    }


def test_publish_knows_the_stage_management_endpoint_and_broadcast_switch() -> None:
    env = environments({"stageName": "prod", "broadcastEnabled": "false"})
    publish = env[contract.PUBLISH]
    assert publish is not None
    assert publish[contract.ENV_MANAGEMENT_ENDPOINT] == (
        f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/prod"
    )
    assert publish[contract.ENV_BROADCAST_ENABLED] == "false"


@pytest.mark.parametrize("broadcast", [True, False])
def test_each_role_allows_exactly_what_its_handler_calls(broadcast: bool) -> None:
    deployed = deploy({"broadcastEnabled": str(broadcast).lower(), "stageName": "live"})
    policies = deployed.all("aws:iam/rolePolicy:RolePolicy")
    assert role_grants(deployed) == expected_grants(broadcast=broadcast, stage="live")
    for handler in contract.HANDLERS:
        role = deployed.one("aws:iam/role:Role", f"{handler}-role")
        assert policies[f"{handler}-policy"].inputs["role"] == f"{handler}-role-id"
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    # No managed (wildcard) policies on function roles; the only attachment is API Gateway's.
    attachments = deployed.all("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert set(attachments) == {"websocket-account-logs"}


def test_statement_refuses_a_wildcard_resource() -> None:
    with pytest.raises(ValueError, match="name the ARN"):
        statement(["dynamodb:Query"], ["*"])


def test_archive_holds_the_functions_modules_only() -> None:
    files = code_files()
    expected = {
        f"functions/{path.name}"
        for path in (PROJECT_ROOT / "functions").glob("*.py")
        if not path.name.startswith("test_") and path.name != "conftest.py"
    }
    assert set(files) == expected
    assert "functions/contract.py" in files
    # Every handler module ships (handler_path points into the archive).
    assert {f"functions/{handler}.py" for handler in contract.HANDLERS} <= set(files)
    archive = code_archive()
    assert set(archive.assets) == set(files)
    for name, asset in archive.assets.items():
        assert isinstance(asset, pulumi.FileAsset)
        assert Path(asset.path) == files[name]


def test_archive_leaves_out_caches_tests_and_subfolders(tmp_path: Path) -> None:
    package = tmp_path / "functions"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__pycache__" / "contract.cpython-312.pyc").write_bytes(b"\0")
    (package / "tools").mkdir()
    (package / "tools" / "fake.py").write_text("")
    for name in ("__init__.py", "contract.py", "publish.py", "test_publish.py", "conftest.py"):
        (package / name).write_text("# module\n")
    (package / "notes.txt").write_text("not code")
    assert list(code_files(tmp_path)) == [
        "functions/__init__.py",
        "functions/contract.py",
        "functions/publish.py",
    ]


def test_archive_is_the_same_for_an_unchanged_tree() -> None:
    first, second = code_archive(), code_archive()
    assert {k: v.path for k, v in first.assets.items()} == {
        k: v.path for k, v in second.assets.items()
    }


def test_function_names_must_fit_lambdas_limit() -> None:
    assert function_name(PROJECT, "dev", contract.PUBLISH) == f"{PROJECT}-dev-publish"
    with pytest.raises(ValueError, match="shorter stack name"):
        function_name(PROJECT, "a-very-long-stack-name-for-a-branch-preview", contract.DISCONNECT)
