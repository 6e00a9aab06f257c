"""Security of the deployed shape, checked over every resource the program registers.

- Every role allows exactly what is expected of it (`expected_grants`), and every expected action
  is one the handler's code calls (or Lambda performs with the role on the function's behalf).
- No policy statement of any kind names `*` as its resource; wildcards appear only where AWS
  has no single ARN (the streams of one log group, the connections of one stage).
- The topic, the table and the queue are encrypted at rest.
- Nothing outside the account may publish to the topic, send to the queue or invoke a function.
- parliament (an IAM policy linter) finds nothing in any policy the program generates.

The checks read every registered resource rather than a list of known ones, so a resource or
policy added later is checked too; the tests at the bottom show each check does reject what it
is meant to reject.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import pulumi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import contract
from infra.settings import PROJECT_ROOT
from tests.infra.conftest import (
    ACCOUNT,
    QUEUE_ARN,
    TABLE_ARN,
    TOPIC_ARN,
    Deployed,
    deploy,
    expected_grants,
    policy_grants,
    role_grants,
)

with warnings.catch_warnings():
    # parliament imports pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore", DeprecationWarning)
    import parliament

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ACCOUNT_ROLE = "websocket-account-role"
ACCOUNT_ROLE_POLICY_ARN = (
    "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
)

# The configurations whose shapes differ: broadcast adds a grant, the account role is optional.
CONFIGS = [
    {"broadcastEnabled": "true", "manageApiGatewayAccount": "true", "stageName": "dev"},
    {"broadcastEnabled": "false", "manageApiGatewayAccount": "false", "stageName": "prod"},
]


def config_id(config: dict[str, str]) -> str:
    return "-".join(f"{key}={value}" for key, value in config.items())


@pytest.fixture(scope="module", params=CONFIGS, ids=config_id)
def deployed(request: pytest.FixtureRequest) -> Deployed:
    """One deployment per configuration, shared by the module's checks (they only read it).

    Set up before conftest's per-test fixture, so it makes its own event loop and clears
    the config itself.
    """
    pulumi.runtime.set_all_config({}, [])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return deploy(request.param)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# --- Policy documents, wherever the program puts one --------------------------------------


@dataclass(frozen=True)
class PolicyDocument:
    typ: str
    resource: str  # the registered resource's name
    key: str  # the input holding the document
    text: str

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.text)

    @property
    def statements(self) -> list[dict[str, Any]]:
        statements = self.document["Statement"]
        return [statements] if isinstance(statements, dict) else statements

    @property
    def kind(self) -> str:
        if self.key == "assumeRolePolicy":
            return "trust"
        if self.typ in (ROLE_POLICY, "aws:iam/policy:Policy"):
            return "identity"
        return "resource"

    def __str__(self) -> str:
        return f"{self.resource}.{self.key}"


def policy_documents(deployed: Deployed) -> list[PolicyDocument]:
    """Every input of every resource that holds a policy document (JSON text or object)."""
    found = []
    for registered in deployed.mocks.resources:
        for key, value in registered.inputs.items():
            text = _policy_text(value)
            if text is not None:
                found.append(PolicyDocument(registered.typ, registered.name, key, text))
    return found


def _policy_text(value: Any) -> str | None:
    if isinstance(value, dict) and "Statement" in value:
        return json.dumps(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        if isinstance(parsed, dict) and "Statement" in parsed:
            return value
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_policy_scan_finds_every_policy_the_program_makes(deployed: Deployed) -> None:
    # Guards the checks below against passing because they saw nothing.
    kinds: dict[str, set[str]] = {}
    for document in policy_documents(deployed):
        kinds.setdefault(document.kind, set()).add(document.resource)
    manages_account = bool(deployed.all("aws:apigateway/account:Account"))
    roles = {f"{handler}-role" for handler in contract.HANDLERS}
    assert kinds == {
        "trust": roles | ({ACCOUNT_ROLE} if manages_account else set()),
        "identity": {f"{handler}-policy" for handler in contract.HANDLERS},
        "resource": {"notifications-policy", "dead-letters-policy"},
    }


# --- Least privilege --------------------------------------------------------------------------


def test_every_role_is_accounted_for_and_allows_exactly_what_is_expected(
    deployed: Deployed,
) -> None:
    settings_ = deployed.stack.settings
    expected = expected_grants(broadcast=settings_.broadcast_enabled, stage=settings_.stage_name)
    assert role_grants(deployed) == expected
    roles = set(deployed.all(ROLE))
    handler_roles = {f"{handler}-role" for handler in contract.HANDLERS}
    attachments = {a.name: a.inputs for a in deployed.all(ATTACHMENT).values()}
    if settings_.manage_api_gateway_account:
        # API Gateway's logging role: AWS's managed policy for exactly that service role, and
        # nothing of ours.
        assert roles == handler_roles | {ACCOUNT_ROLE}
        assert attachments == {
            "websocket-account-logs": {
                "role": deployed.one(ROLE, ACCOUNT_ROLE).outputs["name"],
                "policyArn": ACCOUNT_ROLE_POLICY_ARN,
            }
        }
    else:
        assert roles == handler_roles
        assert attachments == {}
    # No standalone managed policies, users, groups or policies attached elsewhere.
    iam = {r.typ for r in deployed.mocks.resources if r.typ.startswith("aws:iam/")}
    assert iam <= {ROLE, ROLE_POLICY, ATTACHMENT}


def test_every_role_is_assumable_by_one_aws_service_only(deployed: Deployed) -> None:
    for document in policy_documents(deployed):
        if document.kind != "trust":
            continue
        service = "apigateway" if document.resource == ACCOUNT_ROLE else "lambda"
        assert document.statements == [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ], str(document)


# Actions Lambda itself performs with a function's role and the handler code does not call:
# writing the function's logs. (It also sends a failed asynchronous event to the on-failure
# destination with the role; the publish handler calls that sqs:SendMessage itself as well.)
RUNTIME_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# IAM action -> (boto3 client, method) the handler code calls for it.
ACTION_CALLS = {
    "ssm:GetParameter": ("ssm", "get_parameter"),
    "dynamodb:GetItem": ("dynamodb", "get_item"),
    "dynamodb:PutItem": ("dynamodb", "put_item"),
    "dynamodb:DeleteItem": ("dynamodb", "delete_item"),
    "dynamodb:BatchWriteItem": ("dynamodb", "batch_write_item"),
    "dynamodb:Query": ("dynamodb", "query"),
    "dynamodb:Scan": ("dynamodb", "scan"),
    "sqs:SendMessage": ("sqs", "send_message"),
}
# IAM action -> what the code of a request it signs itself must show (regular expressions).
SIGNED_CALLS = {
    # ManageConnections on POST/@connections/* is PostToConnection, signed for execute-api.
    "execute-api:ManageConnections": (r'"execute-api"', r'"POST"', r"/@connections/"),
}


@cache
def code_of(handler: str) -> str:
    """Source of a handler module and every `functions` module it imports, transitively."""
    seen: dict[str, str] = {}
    pending = [handler]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        source = (PROJECT_ROOT / "functions" / f"{module}.py").read_text()
        seen[module] = source
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "functions":
                pending.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("functions."):
                pending.append(node.module.split(".", 1)[1])
    return "\n".join(seen.values())


@pytest.mark.parametrize("broadcast", [True, False])
def test_every_expected_action_is_one_the_handler_calls(broadcast: bool) -> None:
    # The expected map is checked against the code (a coarse check: a module shared by several
    # handlers counts for each), and the roles against the map (exactly, above).
    expected = expected_grants(broadcast=broadcast, stage="dev")
    for handler, grants in expected.items():
        code = code_of(handler)
        for action, _resource in grants:
            if action in RUNTIME_ACTIONS:
                continue
            if action in SIGNED_CALLS:
                for shows in SIGNED_CALLS[action]:
                    assert re.search(shows, code), f"{handler} never signs {shows} ({action})"
                continue
            assert action in ACTION_CALLS, f"{handler}: no known call for {action}"
            client, method = ACTION_CALLS[action]
            assert f'"{client}"' in code, f"{handler} never makes a {client} client ({action})"
            # client.method(...), or the method named for a retrying wrapper ("method").
            called = re.search(rf"\.{method}\b|[\"']{method}[\"']", code)
            assert called, f"{handler} never calls {method}"


def test_only_the_publish_function_has_a_failure_destination(deployed: Deployed) -> None:
    # Lambda sends failed events only where a destination is configured: publish, the one
    # role allowed sqs:SendMessage.
    configs = deployed.all("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    destinations = {
        c.inputs["functionName"].rsplit("-", 1)[1]: c.inputs["destinationConfig"]
        for c in configs.values()
    }
    assert destinations == {contract.PUBLISH: {"onFailure": {"destination": QUEUE_ARN}}}
    senders = {
        handler
        for handler, grants in role_grants(deployed).items()
        if any(action == "sqs:SendMessage" for action, _ in grants)
    }
    assert senders == set(destinations)


# --- No `*` resources -------------------------------------------------------------------------

# Where AWS has no single ARN for what a handler touches, a trailing wildcard on one named
# resource: the log streams of one log group, the connections of one API stage.
ALLOWED_WILDCARD = re.compile(
    rf"^arn:aws:logs:[a-z0-9-]+:{ACCOUNT}:log-group:[^*]+:\*$"
    rf"|^arn:aws:execute-api:[a-z0-9-]+:{ACCOUNT}:[a-z0-9]+/[A-Za-z0-9_-]+/POST/@connections/\*$"
)


def wildcard_problems(statement: dict[str, Any]) -> list[str]:
    """What is too broad about one statement's resources (empty when nothing is)."""
    problems = [
        f"uses {key}" for key in ("NotResource", "NotAction", "NotPrincipal") if key in statement
    ]
    for resource in _as_list(statement.get("Resource", [])):
        if resource == "*":
            problems.append("Resource is '*'")
        elif "*" in resource and not ALLOWED_WILDCARD.match(resource):
            problems.append(f"wildcard resource {resource!r}")
        elif not resource.startswith("arn:aws:"):
            problems.append(f"not an ARN: {resource!r}")
    for action in _as_list(statement.get("Action", [])):
        if "*" in action:
            problems.append(f"wildcard action {action!r}")
    return problems


def test_no_statement_names_a_wildcard_resource_or_action(deployed: Deployed) -> None:
    problems = {
        f"{document}[{index}]": found
        for document in policy_documents(deployed)
        for index, statement in enumerate(document.statements)
        if (found := wildcard_problems(statement))
    }
    assert problems == {}


def test_identity_and_resource_statements_name_their_resources(deployed: Deployed) -> None:
    for document in policy_documents(deployed):
        for statement in document.statements:
            if document.kind == "trust":
                assert "Resource" not in statement, str(document)
            else:
                assert statement.get("Resource"), str(document)


# --- Encryption at rest -----------------------------------------------------------------------


def encryption_problems(typ: str, inputs: dict[str, Any]) -> list[str]:
    if typ == "aws:sns/topic:Topic" and not inputs.get("kmsMasterKeyId"):
        return ["topic has no kmsMasterKeyId"]
    if typ == "aws:dynamodb/table:Table" and not (inputs.get("serverSideEncryption") or {}).get(
        "enabled"
    ):
        return ["table has no server-side encryption enabled"]
    if typ == "aws:sqs/queue:Queue" and not (
        inputs.get("sqsManagedSseEnabled") is True or inputs.get("kmsMasterKeyId")
    ):
        return ["queue has no SSE"]
    if typ == "aws:ssm/parameter:Parameter" and inputs.get("type") != "SecureString":
        return ["parameter is not a SecureString"]
    return []


def test_topic_table_queue_and_secret_are_encrypted(deployed: Deployed) -> None:
    stores = [
        r
        for r in deployed.mocks.resources
        if r.typ
        in (
            "aws:sns/topic:Topic",
            "aws:dynamodb/table:Table",
            "aws:sqs/queue:Queue",
            "aws:ssm/parameter:Parameter",
        )
    ]
    assert sorted(r.typ for r in stores) == [
        "aws:dynamodb/table:Table",
        "aws:dynamodb/table:Table",
        "aws:sns/topic:Topic",
        "aws:sqs/queue:Queue",
        "aws:ssm/parameter:Parameter",
    ]
    assert {r.name: encryption_problems(r.typ, r.inputs) for r in stores} == {
        r.name: [] for r in stores
    }


# --- Nothing from outside the account ---------------------------------------------------------

# Condition keys that tie a service principal's request to this account.
ACCOUNT_CONDITION_KEYS = {"aws:sourceowner", "aws:sourceaccount"}
SOURCE_ARN_KEY = "aws:sourcearn"
ARN_ACCOUNT = re.compile(r"^arn:aws:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")


def _account_of(arn: str) -> str | None:
    match = ARN_ACCOUNT.match(arn)
    return match.group(1) if match else None


def is_this_accounts_principal(principal: str) -> bool:
    if principal == ACCOUNT:
        return True
    return principal.startswith(f"arn:aws:iam::{ACCOUNT}:")


def _conditions_bind_to_account(condition: dict[str, Any]) -> bool:
    for operator, pairs in condition.items():
        if operator.startswith("ForAnyValue:") or operator.endswith("IfExists"):
            continue  # these hold when the key is missing or matches only one value
        for key, values in pairs.items():
            values = _as_list(values)
            if (
                operator == "StringEquals"
                and key.lower() in ACCOUNT_CONDITION_KEYS
                and values == [ACCOUNT]
            ):
                return True
            if (
                operator in ("ArnEquals", "ArnLike")
                and key.lower() == SOURCE_ARN_KEY
                and all("*" not in v and _account_of(v) == ACCOUNT for v in values)
            ):
                return True
    return False


def outsider_problems(statement: dict[str, Any]) -> list[str]:
    """Why a resource-policy statement could let someone outside the account in (or [])."""
    if statement.get("Effect") != "Allow":
        return []
    principal = statement.get("Principal")
    condition = statement.get("Condition") or {}
    if principal is None:
        return ["no Principal"]
    if principal == "*":
        principals: dict[str, list[str]] = {"*": ["*"]}
    else:
        principals = {kind: _as_list(values) for kind, values in principal.items()}
    problems = []
    for kind, values in principals.items():
        for value in values:
            if kind == "AWS" and is_this_accounts_principal(value):
                continue
            # A service principal or "*" acts for anyone unless a condition ties it to us.
            if kind in ("Service", "*") or value == "*":
                if _conditions_bind_to_account(condition):
                    continue
                problems.append(f"{kind} principal {value!r} without an account condition")
            else:
                problems.append(f"{kind} principal {value!r} is outside the account")
    return problems


def test_only_this_account_may_publish_to_the_topic(deployed: Deployed) -> None:
    documents = [d for d in policy_documents(deployed) if d.typ.startswith("aws:sns/")]
    assert [str(d) for d in documents] == ["notifications-policy.policy"]
    (document,) = documents
    assert deployed.one("aws:sns/topicPolicy:TopicPolicy", "notifications-policy").inputs[
        "arn"
    ] == (TOPIC_ARN)
    publishing = [s for s in document.statements if "sns:Publish" in _as_list(s["Action"])]
    assert publishing, "the policy says who may publish"
    assert [outsider_problems(s) for s in document.statements] == [[] for _ in document.statements]


def test_no_resource_policy_lets_anyone_outside_the_account_in(deployed: Deployed) -> None:
    problems = {
        f"{document}[{index}]": found
        for document in policy_documents(deployed)
        if document.kind == "resource"
        for index, statement in enumerate(document.statements)
        if (found := outsider_problems(statement))
    }
    assert problems == {}


def test_functions_may_be_invoked_from_this_accounts_api_and_topic_only(
    deployed: Deployed,
) -> None:
    permissions = deployed.all("aws:lambda/permission:Permission")
    assert permissions
    for name, permission in permissions.items():
        source = permission.inputs.get("sourceArn", "")
        assert _account_of(source) == ACCOUNT, name
        assert permission.inputs["principal"] in (
            "apigateway.amazonaws.com",
            "sns.amazonaws.com",
        ), name


# --- parliament -------------------------------------------------------------------------------

# parliament lints identity policies; a trust policy has no Resource by definition (IAM rejects
# one that does), which parliament reports as MALFORMED. That one finding, on trust policies
# only, is not a problem.
TRUST_POLICY_FALSE_POSITIVE = ("MALFORMED", "Statement contains neither Resource nor NotResource")


def lint(text: str) -> list[tuple[str, str, Any]]:
    """parliament's findings, community auditors included, as (issue, detail, location)."""
    policy = parliament.analyze_policy_string(text, include_community_auditors=True)
    return [(f.issue, str(f.detail), f.location) for f in policy.findings]


def relevant_findings(document: PolicyDocument) -> list[tuple[str, str, Any]]:
    findings = lint(document.text)
    if document.kind == "trust":
        findings = [f for f in findings if (f[0], f[1]) != TRUST_POLICY_FALSE_POSITIVE]
    return findings


def test_parliament_finds_nothing_in_any_generated_policy(deployed: Deployed) -> None:
    documents = policy_documents(deployed)
    assert {d.kind for d in documents} == {"identity", "trust", "resource"}
    findings = {str(d): found for d in documents if (found := relevant_findings(d))}
    for where, found in findings.items():
        for issue, detail, location in found:
            print(f"{where}: {issue}: {detail} at {location}")
    assert findings == {}


def test_parliament_runs_on_the_role_policies_themselves(deployed: Deployed) -> None:
    # Not just "no findings": parliament reads each identity policy as allowing exactly our
    # (action, resource) pairs, so every resource is of a type its action applies to.
    for document in policy_documents(deployed):
        if document.kind != "identity":
            continue
        policy = parliament.analyze_policy_string(document.text)
        granted = policy_grants(document.text)
        actions = {action for action, _ in granted}
        # parliament lower-cases the actions it lists, but matches resources by exact name.
        assert set(policy.get_allowed_actions(raise_exceptions=True)) == {
            action.lower() for action in actions
        }, str(document)
        understood = {
            (action, resource)
            for action in actions
            for resource in policy.get_allowed_resources(*action.split(":"))
        }
        assert understood == granted, str(document)


# --- The checks reject what they should ---------------------------------------------------


def _identity(action: str, resource: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
        }
    )


@pytest.mark.parametrize(
    ("action", "resource", "issue"),
    [
        ("dynamodb:Query", QUEUE_ARN, "RESOURCE_MISMATCH"),  # an action on the wrong resource
        ("dynamodb:Querry", TABLE_ARN, "UNKNOWN_ACTION"),
        ("sqs:SendMessage", "*", "RESOURCE_STAR"),
    ],
)
def test_parliament_does_flag_a_bad_policy(action: str, resource: str, issue: str) -> None:
    assert issue in {found[0] for found in lint(_identity(action, resource))}


def test_parliament_false_positive_filter_applies_to_trust_policies_only() -> None:
    trust_shaped = _identity("sts:AssumeRole", "*")
    document = json.loads(trust_shaped)
    del document["Statement"][0]["Resource"]
    text = json.dumps(document)
    assert TRUST_POLICY_FALSE_POSITIVE in {(i, d) for i, d, _ in lint(text)}
    assert relevant_findings(PolicyDocument(ROLE, "r", "assumeRolePolicy", text)) == []
    assert relevant_findings(PolicyDocument(ROLE_POLICY, "p", "policy", text)) != []


@pytest.mark.parametrize(
    "resource",
    ["*", "arn:aws:dynamodb:*:*:table/x", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:*", "table/x"],
)
def test_wildcard_check_rejects_broad_resources(resource: str) -> None:
    assert wildcard_problems({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": resource})


def test_wildcard_check_rejects_not_resource_and_wildcard_actions() -> None:
    assert wildcard_problems({"Effect": "Allow", "Action": "sqs:*", "Resource": QUEUE_ARN})
    assert wildcard_problems({"Effect": "Allow", "Action": "sqs:SendMessage", "NotResource": "x"})


OUTSIDER = "210987654321"


@pytest.mark.parametrize(
    "statement",
    [
        {"Principal": "*"},
        {"Principal": {"AWS": "*"}},
        {"Principal": {"AWS": f"arn:aws:iam::{OUTSIDER}:root"}},
        {"Principal": {"AWS": OUTSIDER}},
        {"Principal": {"Service": "sns.amazonaws.com"}},
        {"Principal": "*", "Condition": {"StringEquals": {"aws:SourceOwner": OUTSIDER}}},
        {"Principal": "*", "Condition": {"StringEqualsIfExists": {"aws:SourceOwner": ACCOUNT}}},
        {
            "Principal": {"Service": "sns.amazonaws.com"},
            "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:notifications"}},
        },
        {
            "Principal": {"Service": "sns.amazonaws.com"},
            "Condition": {
                "ArnEquals": {"aws:SourceArn": f"arn:aws:sns:eu-west-1:{OUTSIDER}:topic"}
            },
        },
    ],
)
def test_outsider_check_rejects_open_statements(statement: dict[str, Any]) -> None:
    full = {"Effect": "Allow", "Action": "sns:Publish", "Resource": TOPIC_ARN, **statement}
    assert outsider_problems(full)


@pytest.mark.parametrize(
    "statement",
    [
        {"Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}},
        {"Principal": {"AWS": ACCOUNT}},
        {"Principal": "*", "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}}},
        {
            "Principal": {"Service": "sns.amazonaws.com"},
            "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC_ARN}},
        },
    ],
)
def test_outsider_check_accepts_account_bound_statements(statement: dict[str, Any]) -> None:
    full = {"Effect": "Allow", "Action": "sns:Publish", "Resource": TOPIC_ARN, **statement}
    assert outsider_problems(full) == []


@pytest.mark.parametrize(
    ("typ", "inputs"),
    [
        ("aws:sns/topic:Topic", {}),
        ("aws:dynamodb/table:Table", {"serverSideEncryption": {"enabled": False}}),
        ("aws:sqs/queue:Queue", {"sqsManagedSseEnabled": False}),
        ("aws:ssm/parameter:Parameter", {"type": "String"}),
    ],
)
def test_encryption_check_rejects_plain_stores(typ: str, inputs: dict[str, Any]) -> None:
    assert encryption_problems(typ, inputs)


# --- Any configuration ------------------------------------------------------------------------

ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# What StackSettings accepts: letters, digits, '-' and '_', at least one letter or digit.
STAGE_NAMES = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(ALPHANUMERIC),
    st.text(alphabet=ALPHANUMERIC + "_-", max_size=15),
)


@settings(
    max_examples=25,
    deadline=None,
    # Each example deploys against fresh mocks; the per-test event loop may be shared.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(broadcast=st.booleans(), manage_account=st.booleans(), stage=STAGE_NAMES)
def test_every_configuration_is_least_privilege_and_lint_clean(
    broadcast: bool, manage_account: bool, stage: str
) -> None:
    deployed = deploy(
        {
            "broadcastEnabled": str(broadcast).lower(),
            "manageApiGatewayAccount": str(manage_account).lower(),
            "stageName": stage,
        }
    )
    assert role_grants(deployed) == expected_grants(broadcast=broadcast, stage=stage)
    for document in policy_documents(deployed):
        assert relevant_findings(document) == [], str(document)
        for statement in document.statements:
            assert wildcard_problems(statement) == [], str(document)
            if document.kind == "resource":
                assert outsider_problems(statement) == [], str(document)
