"""The local stack's command line.

python -m local up [--stack dev] [--host 127.0.0.1] [--port 8765] [--aws-port 4566]
                   [--state-dir .local] [--lambda-retry-delays 1,2]
                   [--idle-timeout-seconds 600] [--max-connection-seconds 7200]
                   [--jwt-issuer ISS] [--jwt-audience AUD] [fault flags, see --help]
python -m local token USER_ID [--ttl 3600] [--state-dir .local]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from functions import contract
from local.delivery import AWS_RETRY_DELAYS_SECONDS, RetryPolicy
from local.faults import Faults
from local.gateway import Limits
from local.stack import OUTPUTS_FILE, Options, configure_logging, default_state_dir, run


def _retry_policy(text: str) -> RetryPolicy:
    try:
        return RetryPolicy.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the local stack in the foreground (Ctrl-C stops)")
    up.add_argument("--stack", default="dev", help="stack whose settings to use (default dev)")
    up.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    up.add_argument("--port", type=int, default=8765, help="gateway port (0 picks a free one)")
    up.add_argument(
        "--aws-port", type=int, default=4566, help="AWS emulator port (0 picks a free one)"
    )
    up.add_argument("--state-dir", type=Path, default=default_state_dir(), help="outputs.json dir")
    up.add_argument("--verbose", action="store_true", help="debug logging")
    up.add_argument(
        "--lambda-retry-delays",
        type=_retry_policy,
        default=RetryPolicy(),
        metavar="SECONDS[,SECONDS]",
        help="delays before Lambda's (at most two) retries of a failed publish invocation "
        "(default 1,2; AWS waits about "
        + ",".join(str(delay) for delay in AWS_RETRY_DELAYS_SECONDS)
        + "; empty: no retry)",
    )
    up.add_argument(
        "--idle-timeout-seconds",
        type=_positive_seconds,
        default=contract.IDLE_TIMEOUT_SECONDS,
        help="close a connection idle this long, with 1001 (API Gateway: 600)",
    )
    up.add_argument(
        "--max-connection-seconds",
        type=_positive_seconds,
        default=contract.CONNECTION_MAX_SECONDS,
        help="close any connection this old, with 1001 (API Gateway: 7200)",
    )
    up.add_argument("--jwt-issuer", help="require this token issuer (overrides the stack's)")
    up.add_argument("--jwt-audience", help="require this token audience (overrides the stack's)")
    up.add_argument(
        "--connecting-grace-seconds",
        type=int,
        help="a 410 deletes a session row only once it is this old (handler default: 5); "
        "tests that make clients vanish right after connecting pass 0",
    )
    Faults.add_arguments(up)

    token = commands.add_parser("token", help="print a valid token for a user of the stack")
    token.add_argument("user_id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    token.add_argument("--state-dir", type=Path, default=default_state_dir())

    args = parser.parse_args(argv)
    if args.command == "up":
        configure_logging(args.verbose)
        return run(
            Options(
                stack=args.stack,
                host=args.host,
                port=args.port,
                aws_port=args.aws_port,
                state_dir=args.state_dir,
                faults=Faults.from_args(args),
                retries=args.lambda_retry_delays,
                limits=Limits(args.idle_timeout_seconds, args.max_connection_seconds),
                jwt_issuer=args.jwt_issuer,
                jwt_audience=args.jwt_audience,
                connecting_grace_seconds=args.connecting_grace_seconds,
            )
        )
    return _token(args.user_id, args.ttl, args.state_dir)


def _token(user_id: str, ttl: int, state_dir: Path) -> int:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.tokens import issue_token
    from infra.settings import settings_for_stack

    outputs_path = state_dir / OUTPUTS_FILE
    try:
        outputs = json.loads(outputs_path.read_text())
    except FileNotFoundError:
        print(
            f"error: {outputs_path} not found: the local stack is not running "
            "(start it with `python -m local up`)",
            file=sys.stderr,
        )
        return 1
    ssm = boto3.client(
        "ssm",
        endpoint_url=outputs["awsEndpointUrl"],
        region_name=outputs["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )
    try:
        parameter = ssm.get_parameter(Name=outputs["jwtSecretParameter"], WithDecryption=True)
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot read the token key from the emulator at {outputs['awsEndpointUrl']} "
            f"({error}); is `python -m local up` still running?",
            file=sys.stderr,
        )
        return 1
    if "jwtIssuer" in outputs:
        issuer, audience = outputs["jwtIssuer"], outputs["jwtAudience"]
    else:  # outputs of an older stack
        settings = settings_for_stack(outputs.get("stack", "dev"))
        issuer, audience = settings.jwt_issuer, settings.jwt_audience
    print(
        issue_token(
            user_id,
            parameter["Parameter"]["Value"],
            ttl_seconds=ttl,
            issuer=issuer or None,
            audience=audience or None,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
