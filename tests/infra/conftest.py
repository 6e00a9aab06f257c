"""Pulumi mocks for the infra tests: every test deploys a fresh program against fresh mocks.

`deploy()` runs `build_stack` (or `main`) under `pulumi.runtime.test`, which waits for every
resource registration, then hands back the inputs each resource was registered with, exactly
as the engine would have received them (camelCase, Outputs resolved).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

from functions import contract
from infra.settings import StackSettings, settings_from
from infra.stack import Stack, build_stack

PROJECT = "mentorassist-websocket"
STACK = "test"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
# Distinctive, so a leak anywhere is found by a substring search.
JWT_SECRET = "jwt-secret-for-tests-0123456789-abcdefghijklmnop"

# Physical names and ARNs as the mocks below make them (auto-named resources get "-1a2b3c4").
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/sessions-1a2b3c4"
PENDING_TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pending-deliveries-1a2b3c4"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:notifications-1a2b3c4"
QUEUE_NAME = "dead-letters-1a2b3c4"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE_NAME}"
PARAMETER = f"/{PROJECT}/{STACK}/jwt-secret"
PARAMETER_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETER}"
EXECUTION_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"


def queue_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    # Names of the resources it waits for (explicit depends_on and those its inputs come from).
    depends_on: frozenset[str] = frozenset()


class Monitor(pulumi.runtime.mocks.MockMonitor):
    """The mock engine, also noting what each resource was registered as depending on."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, frozenset[str]] = {}

    def RegisterResource(self, request: Any) -> Any:  # the engine's RPC name
        names = frozenset(urn.rsplit("::", 1)[-1] for urn in request.dependencies)
        self.dependencies[request.name] = names
        return super().RegisterResource(request)


class Mocks(pulumi.runtime.Mocks):
    """Plausible provider behaviour: ids, auto-names and ARNs shaped like AWS's."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        typ, name = args.typ, args.name
        resource_id = API_ID if typ == "aws:apigatewayv2/api:Api" else f"{name}-id"
        outputs = dict(args.inputs)
        # Auto-naming: the provider appends a random suffix to the resource name.
        outputs.setdefault("name", f"{name}-1a2b3c4")
        physical = outputs["name"]
        if typ == "aws:sqs/queue:Queue":
            # A queue's id is its URL.
            resource_id = outputs["url"] = queue_url(physical)
        prefix = f"arn:aws:{{}}:{REGION}:{ACCOUNT}"
        if typ == "aws:lambda/function:Function":
            arn = f"{prefix.format('lambda')}:function:{physical}"
            outputs["invokeArn"] = (
                f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
        elif typ == "aws:apigatewayv2/api:Api":
            arn = f"arn:aws:apigateway:{REGION}::/apis/{resource_id}"
            outputs["apiEndpoint"] = f"wss://{resource_id}.execute-api.{REGION}.amazonaws.com"
            outputs["executionArn"] = f"{prefix.format('execute-api')}:{resource_id}"
        elif typ == "aws:dynamodb/table:Table":
            arn = f"{prefix.format('dynamodb')}:table/{physical}"
        elif typ == "aws:sns/topic:Topic":
            arn = f"{prefix.format('sns')}:{physical}"
        elif typ == "aws:ssm/parameter:Parameter":
            arn = f"{prefix.format('ssm')}:parameter{physical}"
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            arn = f"{prefix.format('logs')}:log-group:{physical}"
        elif typ == "aws:sqs/queue:Queue":
            arn = f"{prefix.format('sqs')}:{physical}"
        elif typ == "aws:iam/role:Role":
            arn = f"arn:aws:iam::{ACCOUNT}:role/{physical}"
        else:
            arn = f"{prefix.format('mock')}:{typ}/{physical}"
        outputs["arn"] = arn
        self.resources.append(Registered(typ, name, dict(args.inputs), outputs))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        # A plain dict: this SDK version cannot iterate a (result, None) tuple's failures.
        self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": REGION, "name": REGION, "region": REGION, "endpoint": ""}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": ACCOUNT,
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/test",
                "userId": "AIDATEST",
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "id": "aws",
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }
        raise NotImplementedError(f"unexpected invoke {args.token}")


@dataclass
class Deployed:
    stack: Stack
    mocks: Mocks
    outputs: dict[str, Any]  # stack outputs, resolved
    secret: dict[str, bool] = field(default_factory=dict)  # Output name -> is it secret

    def all(self, typ: str) -> dict[str, Registered]:
        return {r.name: r for r in self.mocks.resources if r.typ == typ}

    def one(self, typ: str, name: str) -> Registered:
        found = self.all(typ)
        assert name in found, f"no {typ} named {name!r}; have {sorted(found)}"
        return found[name]


def stack_settings(**config: Any) -> StackSettings:
    """Settings from config keys as Pulumi.yaml names them; unset keys take its defaults."""
    return settings_from(lambda key: config.get(key))


def deploy(
    config: dict[str, Any] | None = None,
    *,
    program: Callable[[], Stack] | None = None,
    jwt_secret: pulumi.Input[str] | None = None,
) -> Deployed:
    """Run one program against fresh mocks; `program` defaults to `build_stack` on `config`."""
    mocks = Mocks()
    monitor = Monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=False, monitor=monitor)
    result: dict[str, Any] = {}

    def default_program() -> Stack:
        secret = pulumi.Output.secret(JWT_SECRET) if jwt_secret is None else jwt_secret
        return build_stack(stack_settings(**(config or {})), secret)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        stack = (program or default_program)()
        result["stack"] = stack
        # Returned, so the test runner waits for every output to resolve.
        return pulumi.Output.all(**stack.outputs).apply(lambda values: result.update(values))

    run()
    mocks.resources[:] = [
        dataclasses.replace(r, depends_on=monitor.dependencies.get(r.name, frozenset()))
        for r in mocks.resources
    ]
    stack = result.pop("stack")
    watched = {"parameterValue": stack.jwt_secret.value, **stack.outputs}

    async def secrecy() -> dict[str, bool]:
        return {name: await output.is_secret() for name, output in watched.items()}

    # The runtime's event loop is still current; is_secret() only reads settled futures.
    secret = asyncio.get_event_loop().run_until_complete(secrecy())
    return Deployed(stack=stack, mocks=mocks, outputs=result, secret=secret)


def policy_grants(policy_json: str) -> set[tuple[str, str]]:
    """(action, resource) pairs an identity policy allows; fails on anything but Allow."""
    document = json.loads(policy_json)
    assert document["Version"] == "2012-10-17"
    grants: set[tuple[str, str]] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                grants.add((action, resource))
    return grants


def fn_name(handler: str) -> str:
    return f"{PROJECT}-{STACK}-{handler}"


def log_arn(handler: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{fn_name(handler)}:*"


def expected_grants(*, broadcast: bool, stage: str) -> dict[str, set[tuple[str, str]]]:
    """Handler -> the (action, resource) pairs its role must allow, and nothing else.

    Written out from the resource names rather than read back from the program, so a grant the
    program adds or widens shows up as a difference.
    """

    def logs(handler: str) -> set[tuple[str, str]]:
        # Lambda writes the function's logs with its role.
        return {
            ("logs:CreateLogStream", log_arn(handler)),
            ("logs:PutLogEvents", log_arn(handler)),
        }

    publish = {
        ("dynamodb:Query", f"{TABLE_ARN}/index/{contract.USER_INDEX}"),
        ("dynamodb:BatchWriteItem", TABLE_ARN),
        ("dynamodb:DeleteItem", TABLE_ARN),
        ("execute-api:ManageConnections", f"{EXECUTION_ARN}/{stage}/POST/@connections/*"),
        ("dynamodb:GetItem", PENDING_TABLE_ARN),
        ("dynamodb:PutItem", PENDING_TABLE_ARN),
        ("dynamodb:DeleteItem", PENDING_TABLE_ARN),
        # The handler dead-letters what no retry can fix; Lambda sends an event that failed
        # every attempt to the on-failure destination with the function's role.
        ("sqs:SendMessage", QUEUE_ARN),
    }
    if broadcast:
        publish.add(("dynamodb:Scan", TABLE_ARN))
    return {
        contract.AUTHORIZER: logs(contract.AUTHORIZER) | {("ssm:GetParameter", PARAMETER_ARN)},
        contract.CONNECT: logs(contract.CONNECT) | {("dynamodb:PutItem", TABLE_ARN)},
        contract.DISCONNECT: logs(contract.DISCONNECT) | {("dynamodb:DeleteItem", TABLE_ARN)},
        contract.DEFAULT: logs(contract.DEFAULT),
        contract.PUBLISH: logs(contract.PUBLISH) | publish,
    }


def role_grants(deployed: Deployed) -> dict[str, set[tuple[str, str]]]:
    """Handler -> what its role's inline policy allows."""
    return {
        name.removesuffix("-policy"): policy_grants(p.inputs["policy"])
        for name, p in deployed.all("aws:iam/rolePolicy:RolePolicy").items()
    }


@pytest.fixture(autouse=True)
def _no_config() -> Iterator[None]:
    """Each test starts with no stack config (a test that needs some sets it).

    It also gets an event loop of its own: Pulumi's test runner uses the thread's current loop,
    and tests elsewhere in the session (asyncio.run) leave the main thread without one.
    """
    pulumi.runtime.set_all_config({}, [])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    left_pending = bool(asyncio.all_tasks(loop))
    asyncio.set_event_loop(None)
    loop.close()
    if left_pending:
        # A program that failed leaves pending tasks behind: collect them now (see below).
        gc.collect()


@pytest.fixture(scope="module", autouse=True)
def _no_garbage_left_by_others() -> None:
    """Collect what earlier modules left (unretrieved futures, pending tasks) before starting.

    Their finalizers log a traceback, and on CPython 3.11.7 formatting one calls ast.parse; if
    a collection lands inside another ast.parse (pytest's assertion rewriting or failure report,
    hypothesis, these tests) that one fails with "AST constructor recursion depth mismatch".
    """
    gc.collect()
