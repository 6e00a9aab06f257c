"""`python -m mentorassist`: publish notifications from a shell.

    python -m mentorassist send --user alice [--user bob] --type chat '{"text": "hi"}'
    python -m mentorassist send --user alice --data-file payload.json
    python -m mentorassist broadcast --type ops 'Maintenance at 22:00 UTC'
    python -m mentorassist send --local --user alice hello      # the running local stack
    python -m mentorassist replay --queue-url URL --topic-arn ARN   # see mentorassist.replay

DATA is sent as is: JSON reaches clients as JSON, any other text as a string (data that starts
with `{` or `[` must be valid JSON unless --text says it is text). The topic comes
from --topic-arn, MENTORASSIST_TOPIC_ARN, or `pulumi stack output topicArn` (--stack); --local
uses the running local stack's outputs.json instead. AWS credentials come from boto3's usual
chain (environment, profile, role).

Prints the notification's SNS MessageId. Exit status: 0 published, 2 invalid input (the reason
on stderr), 1 AWS refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mentorassist.publisher import (
    InvalidNotification,
    Notification,
    Publisher,
    PublishFailed,
    TopicNotConfigured,
)

EXIT_OK, EXIT_AWS_ERROR, EXIT_INVALID = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m mentorassist",
        description="Publish MentorAssist notifications.",
        epilog="Exit status: 0 published, 2 invalid input, 1 AWS error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    send = commands.add_parser("send", help="notify one or more users")
    send.add_argument(
        "--user",
        dest="users",
        action="append",
        required=True,
        metavar="USER_ID",
        help="target user id (repeat for several, at most 100)",
    )
    _notification_arguments(send)

    broadcast = commands.add_parser("broadcast", help="notify every connected client")
    _notification_arguments(broadcast)

    if _replay_available():
        # Only listed here: main() hands `replay ...` to mentorassist.replay untouched.
        commands.add_parser(
            "replay",
            help="re-publish dead-lettered notifications (python -m mentorassist replay --help)",
        )
    return parser


def _notification_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("data", nargs="?", help="the payload: JSON, or any text")
    data.add_argument(
        "--data-file", type=Path, metavar="PATH", help="read the payload from a file ('-': stdin)"
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="send the data as text even if it looks like broken JSON",
    )
    parser.add_argument("--type", help="event type clients see (default: notification)")
    parser.add_argument("--id", help="stable notification id (clients dedupe by it)")
    aws = parser.add_argument_group("where to publish")
    aws.add_argument("--topic-arn", help="SNS topic (default: MENTORASSIST_TOPIC_ARN or Pulumi)")
    aws.add_argument("--stack", help="Pulumi stack whose topicArn output to use")
    aws.add_argument("--endpoint-url", help="SNS endpoint (e.g. an emulator)")
    aws.add_argument("--region", help="AWS region (default: the topic's)")
    aws.add_argument(
        "--local", action="store_true", help="publish to the running local stack (outputs.json)"
    )
    aws.add_argument(
        "--state-dir", type=Path, help="the local stack's state dir (default .local); with --local"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["replay"] and _replay_available():
        from mentorassist import replay

        return int(replay.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        data = _read_data(args)
        notification = (
            Notification.to(args.users, data, type=args.type, id=args.id)
            if args.command == "send"
            else Notification.to_everyone(data, type=args.type, id=args.id)
        )
        publisher = _publisher(args)
        message_id = publisher.publish(notification)
    except (InvalidNotification, TopicNotConfigured, _BadInput) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except PublishFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_AWS_ERROR
    print(message_id)
    return EXIT_OK


class _BadInput(Exception):
    pass


def _read_data(args: argparse.Namespace) -> str:
    if args.data_file is None:
        data = str(args.data)
    else:
        try:
            if str(args.data_file) == "-":
                data = sys.stdin.read()
            else:
                data = args.data_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise _BadInput(f"cannot read {args.data_file}: {error}") from None
    if not args.text and data.lstrip().startswith(("{", "[")):
        # Meant as JSON but mistyped: clients would get the broken text as a string.
        try:
            json.loads(data)
        except ValueError as error:
            raise _BadInput(f"data is not valid JSON ({error}); --text sends it as text") from None
    return data


def _publisher(args: argparse.Namespace) -> Publisher:
    if args.local:
        if args.topic_arn or args.endpoint_url or args.stack:
            raise _BadInput("--local takes the topic and endpoint from the local stack")
        return Publisher.local(args.state_dir)
    if args.state_dir:
        raise _BadInput("--state-dir needs --local")
    try:
        return Publisher(
            args.topic_arn,
            endpoint_url=args.endpoint_url,
            region=args.region,
            stack=args.stack,
        )
    except ValueError as error:  # e.g. botocore's invalid endpoint URL
        raise _BadInput(str(error)) from None


def _replay_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mentorassist.replay") is not None
