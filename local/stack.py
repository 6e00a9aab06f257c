"""`python -m local up`: the emulator, the resources, the delivery and the gateway, in order.

Everything runs in this one process: moto's server and the SQS poller on threads, the gateway
on the asyncio loop, the handlers on worker threads. When all of it accepts traffic the stack
writes `<state-dir>/outputs.json` and prints a line starting with `READY `.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web

from functions import contract
from infra.settings import StackSettings, load_project, settings_for_stack
from local import resources
from local.delivery import Delivery, RetryPolicy, sqs_client_for_polling
from local.emulator import ACCOUNT, REGION, Emulator, point_sdk_at
from local.events import API_ID
from local.faults import FaultInjector, Faults, dynamodb_throttling
from local.gateway import DevTools, Gateway, Limits
from local.lambdas import Lambdas

log = logging.getLogger("local.stack")

OUTPUTS_FILE = "outputs.json"
READY_PREFIX = "READY "
# Threads for handler invocations from the gateway (authorizer, $connect, frames,
# $disconnect): enough that a burst of connects does not queue behind each other.
GATEWAY_HANDLER_THREADS = 16
DEV_TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Options:
    stack: str
    host: str
    port: int
    aws_port: int
    state_dir: Path
    faults: Faults
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)
    # Override the stack settings' token issuer / audience (None: keep the stack's).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # The publish handler's connecting grace (None: the handler's default, as on AWS).
    connecting_grace_seconds: int | None = None


@dataclass(frozen=True)
class Names:
    """Resource names, as `<project>-<stack>-<part>` like the Pulumi program's."""

    project: str
    stack: str

    def of(self, part: str) -> str:
        return f"{self.project}-{self.stack}-{part}"


class StartupError(RuntimeError):
    """The stack cannot start; the message says why and what to do."""


def project_name() -> str:
    return str(load_project()["name"])


def run(options: Options) -> int:
    try:
        return asyncio.run(_run(options))
    except StartupError as error:
        log.error("%s", error)
        return 1


async def _run(options: Options) -> int:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=GATEWAY_HANDLER_THREADS, thread_name_prefix="lambda")
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    settings = settings_for_stack(options.stack)
    if options.jwt_issuer is not None:
        settings = replace(settings, jwt_issuer=options.jwt_issuer)
    if options.jwt_audience is not None:
        settings = replace(settings, jwt_audience=options.jwt_audience)
    names = Names(project_name(), options.stack)
    # Bind the gateway port first: with --port 0 the management endpoint the handlers need
    # is known only once the port is.
    gateway_socket = _bind(options.host, options.port)
    port = gateway_socket.getsockname()[1]
    public_host = "127.0.0.1" if options.host in ("0.0.0.0", "") else options.host
    base_http = f"http://{public_host}:{port}"
    websocket_url = f"ws://{public_host}:{port}/{settings.stage_name}"
    management_endpoint = f"{base_http}/{settings.stage_name}"

    injector = FaultInjector(options.faults)
    emulator = Emulator(
        options.host, options.aws_port, middleware=lambda app: dynamodb_throttling(app, injector)
    )
    try:
        aws_endpoint = emulator.start()
    except OSError as error:
        gateway_socket.close()
        raise StartupError(
            f"cannot start the AWS emulator on port {options.aws_port} ({error}); "
            "pass --aws-port with a free port, or --aws-port 0 to pick one"
        ) from None
    outputs_path = options.state_dir / OUTPUTS_FILE
    runner: web.AppRunner | None = None
    delivery: Delivery | None = None
    gateway: Gateway | None = None
    try:
        point_sdk_at(aws_endpoint, REGION)
        secret_parameter = contract.jwt_secret_parameter_name(names.project, names.stack)
        secret = secrets.token_urlsafe(48)
        created = await asyncio.to_thread(
            _create_resources, names, settings, secret_parameter, secret
        )
        _set_handler_environment(
            settings,
            table=names.of("sessions"),
            management_endpoint=management_endpoint,
            secret_parameter=secret_parameter,
            pending_deliveries_table=names.of("pending-deliveries"),
            dead_letter_queue_url=created["deadLetterQueueUrl"],
            connecting_grace_seconds=options.connecting_grace_seconds,
            first_retry_after_seconds=min(options.retries.delays_seconds, default=0),
        )
        log.info(
            "emulator %s: table %s, topic %s, SSM %s",
            aws_endpoint,
            names.of("sessions"),
            created["topicArn"],
            secret_parameter,
        )

        lambdas = Lambdas(
            project=names.project,
            stack=names.stack,
            region=REGION,
            account=ACCOUNT,
            memory_mb=settings.lambda_memory_mb,
            publish_timeout_seconds=settings.publish_timeout_seconds,
        )
        missing = lambdas.preload()
        if missing:
            raise StartupError("handlers missing in functions/: " + "; ".join(missing))

        delivery = Delivery(
            sqs_client_for_polling(),
            queue_url=created["queueUrl"],
            subscription_arn=created["subscriptionArn"],
            dead_letter_queue_url=created["deadLetterQueueUrl"],
            function_arn=lambdas.function_arn(contract.PUBLISH),
            lambdas=lambdas,
            retries=options.retries,
        )
        delivery.start()

        dev_tools = _dev_tools(settings, secret, created["topicArn"])
        gateway = Gateway(
            stage=settings.stage_name,
            region=REGION,
            account=ACCOUNT,
            lambdas=lambdas,
            faults=injector,
            dev_tools=dev_tools,
            websocket_url=lambda: websocket_url,
            limits=options.limits,
        )
        runner = web.AppRunner(gateway.app(), access_log=None, shutdown_timeout=3)
        await runner.setup()
        await web.SockSite(runner, gateway_socket).start()

        outputs = {
            "websocketUrl": websocket_url,
            "managementEndpoint": management_endpoint,
            "topicArn": created["topicArn"],
            "sessionsTable": names.of("sessions"),
            "pendingDeliveriesTable": names.of("pending-deliveries"),
            "awsEndpointUrl": aws_endpoint,
            "region": REGION,
            "jwtSecretParameter": secret_parameter,
            "demoUrl": f"{base_http}/",
            "deadLetterQueueUrl": created["deadLetterQueueUrl"],
            "deadLetterQueueArn": created["deadLetterQueueArn"],
            "apiId": API_ID,
            "stage": settings.stage_name,
            "publishFunction": lambdas.function_name(contract.PUBLISH),
            # Local only: which stack's settings `python -m local token` should read, and
            # the token issuer / audience in force (they may be overridden on the command line).
            "stack": options.stack,
            "jwtIssuer": settings.jwt_issuer,
            "jwtAudience": settings.jwt_audience,
        }
        options.state_dir.mkdir(parents=True, exist_ok=True)
        outputs_path.write_text(json.dumps(outputs, indent=2) + "\n")
        # Faults apply from now on: creating the resources above was never faulted.
        injector.armed = True
        _print_banner(outputs, outputs_path, options)
        print(f"{READY_PREFIX}{websocket_url} outputs={outputs_path}", flush=True)

        await stop.wait()
        log.info("stopping")
    finally:
        outputs_path.unlink(missing_ok=True)
        if gateway is not None:
            await gateway.close_all()
        if runner is not None:
            await runner.cleanup()
        else:
            gateway_socket.close()
        if delivery is not None:
            await asyncio.to_thread(delivery.stop)
        await asyncio.to_thread(emulator.stop)
        log.info("stopped")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port} ({error.strerror}); "
            "pass --port with a free port, or --port 0 to pick one"
        ) from None
    return sock


def _set_handler_environment(
    settings: StackSettings,
    *,
    table: str,
    management_endpoint: str,
    secret_parameter: str,
    pending_deliveries_table: str,
    dead_letter_queue_url: str,
    connecting_grace_seconds: int | None = None,
    first_retry_after_seconds: int | None = None,
) -> None:
    """The variables the Pulumi program gives the functions, with local values."""
    if connecting_grace_seconds is not None:
        os.environ[contract.ENV_CONNECTING_GRACE_SECONDS] = str(connecting_grace_seconds)
    if first_retry_after_seconds is not None:
        # Lambda's retries come a minute apart; the local stack's as soon as its delays say.
        os.environ[contract.ENV_FIRST_RETRY_AFTER_SECONDS] = str(first_retry_after_seconds)
    os.environ.update(
        {
            contract.ENV_SESSIONS_TABLE: table,
            contract.ENV_CONNECTION_TTL_SECONDS: str(settings.connection_ttl_seconds),
            contract.ENV_MANAGEMENT_ENDPOINT: management_endpoint,
            contract.ENV_PUBLISH_CONCURRENCY: str(settings.publish_concurrency),
            contract.ENV_BROADCAST_ENABLED: "true" if settings.broadcast_enabled else "false",
            contract.ENV_JWT_SECRET_PARAMETER: secret_parameter,
            contract.ENV_JWT_ISSUER: settings.jwt_issuer,
            contract.ENV_JWT_AUDIENCE: settings.jwt_audience,
            contract.ENV_PENDING_DELIVERIES_TABLE: pending_deliveries_table,
            contract.ENV_DEAD_LETTER_QUEUE_URL: dead_letter_queue_url,
        }
    )


def _create_resources(
    names: Names, settings: StackSettings, secret_parameter: str, secret: str
) -> dict[str, str]:
    dynamodb = boto3.client("dynamodb")
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    ssm = boto3.client("ssm")
    resources.create_sessions_table(dynamodb, names.of("sessions"))
    resources.create_pending_deliveries_table(dynamodb, names.of("pending-deliveries"))
    topic_arn = resources.create_topic(sns, names.of("notifications"))
    queues = resources.create_delivery_queues(
        sqs,
        sns,
        topic_arn=topic_arn,
        name=names.of("publish"),
        broadcast_enabled=settings.broadcast_enabled,
    )
    resources.put_jwt_secret(ssm, secret_parameter, secret)
    return {
        "topicArn": topic_arn,
        "queueUrl": queues.queue_url,
        "subscriptionArn": queues.subscription_arn,
        "deadLetterQueueUrl": queues.dead_letter_queue_url,
        "deadLetterQueueArn": queues.dead_letter_queue_arn,
    }


def _dev_tools(settings: StackSettings, secret: str, topic_arn: str) -> DevTools:
    from functions.tokens import issue_token

    sns = boto3.client("sns")

    def token_for(user_id: str) -> str:
        return issue_token(
            user_id,
            secret,
            ttl_seconds=DEV_TOKEN_TTL_SECONDS,
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
        )

    def publish(user_ids: list[str], kind: str, message: str) -> str:
        target: dict[str, Any] = (
            {"DataType": "String", "StringValue": user_ids[0]}
            if len(user_ids) == 1
            else {"DataType": "String.Array", "StringValue": json.dumps(user_ids)}
        )
        response = sns.publish(
            TopicArn=topic_arn,
            Message=message,
            MessageAttributes={
                contract.TARGET_USER_ATTRIBUTE: target,
                contract.TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": kind},
            },
        )
        return str(response["MessageId"])

    return DevTools(issue_token=token_for, publish=publish)


def _print_banner(outputs: dict[str, str], outputs_path: Path, options: Options) -> None:
    aws = outputs["awsEndpointUrl"]
    lines = [
        "",
        "MentorAssist WebSocket - local stack is up",
        f"  demo page        {outputs['demoUrl']}",
        f"  websocket        {outputs['websocketUrl']}?token=<token>",
        f"  @connections     {outputs['managementEndpoint']}/@connections/<connectionId>",
        f"  AWS emulator     {aws}  (region {outputs['region']}, any credentials)",
        f"  topic            {outputs['topicArn']}",
        f"  sessions table   {outputs['sessionsTable']}",
        f"  outputs          {outputs_path}",
        f"  faults           {options.faults.describe()}",
        f"  publish retries  {_retries(options.retries)}",
        f"  timeouts         idle {options.limits.idle_timeout_seconds:g}s, "
        f"connection {options.limits.max_connection_seconds:g}s",
        "",
        "  token:    .venv/bin/python -m local token alice"
        + (
            ""
            if outputs_path.parent == default_state_dir()
            else f" --state-dir {outputs_path.parent}"
        ),
        "  publish:  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws sns publish \\",
        f"              --endpoint-url {aws} --region {outputs['region']} \\",
        f"              --topic-arn {outputs['topicArn']} \\",
        '              --message \'{"text": "hello"}\' \\',
        "              --message-attributes "
        '\'{"userId": {"DataType": "String", "StringValue": "alice"}}\'',
        f"  boto3:    boto3.client('sns', endpoint_url='{aws}', region_name='{outputs['region']}',",
        "              aws_access_key_id='local', aws_secret_access_key='local').publish(",
        f"              TopicArn='{outputs['topicArn']}', Message='hello',",
        "              MessageAttributes={'userId': {'DataType': 'String', "
        "'StringValue': 'alice'}})",
        "",
        "Ctrl-C stops the stack.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _retries(retries: RetryPolicy) -> str:
    if not retries.delays_seconds:
        return "none: a failed invocation goes to the dead-letter queue"
    delays = " and ".join(f"{delay}s" for delay in retries.delays_seconds)
    return f"after {delays}, then the dead-letter queue"


def default_state_dir() -> Path:
    from infra.settings import PROJECT_ROOT

    return PROJECT_ROOT / ".local"


def configure_logging(verbose: bool = False) -> None:
    """Readable lines: time, component, message (connection ids and routes in the message)."""

    standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "component"}

    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            record.component = record.name.rsplit(".", 1)[-1]
            line = super().format(record)
            # Handlers log structured fields through `extra` (CloudWatch-style); show them
            # as key=value after the message instead of dropping them.
            extras = {k: v for k, v in vars(record).items() if k not in standard}
            if extras:
                fields = " ".join(f"{key}={value}" for key, value in extras.items())
                head, newline, rest = line.partition("\n")
                line = f"{head} [{fields}]{newline}{rest}"
            return line

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        Formatter("%(asctime)s.%(msecs)03d %(component)-10s %(message)s", datefmt="%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
