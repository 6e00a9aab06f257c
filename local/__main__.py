"""The local stack's command line.

python -m local up [--stack dev] [--host 127.0.0.1] [--port 8765] [--aws-port 4566]
                   [--state-dir .local] [--drop-disconnect]
python -m local token USER_ID [--ttl 3600] [--state-dir .local]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from local.faults import Faults
from local.stack import OUTPUTS_FILE, Options, configure_logging, default_state_dir, run


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
    settings = settings_for_stack(outputs.get("stack", "dev"))
    print(
        issue_token(
            user_id,
            parameter["Parameter"]["Value"],
            ttl_seconds=ttl,
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
