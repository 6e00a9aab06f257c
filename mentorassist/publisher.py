"""Publish notifications to MentorAssist's SNS topic from a backend.

    from mentorassist import Publisher

    publisher = Publisher()                      # topic from MENTORASSIST_TOPIC_ARN or Pulumi
    publisher.send("alice", {"text": "Your mentor replied"}, type="chat")
    publisher.send(["alice", "bob"], {"sessionId": "s-42"}, type="session.reminder")
    publisher.broadcast("Maintenance at 22:00 UTC")

Every notification is checked before it is published, against the rules the publish handler
applies (its own `read_target` / `read_type` / `envelope`) and SNS's limits, so a mistake is an
`InvalidNotification` here instead of a message the handler drops or never delivers.

Data: a dict, list, number, bool or None is sent as JSON and reaches clients as that JSON value;
a str is sent as is — clients see it as a string unless the text itself is valid JSON (the
handler parses any JSON body: the text `42` reaches clients as the number 42).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from functions import contract
from functions import publish as handler_rules

ENV_TOPIC_ARN = "MENTORASSIST_TOPIC_ARN"
ENV_STACK = "MENTORASSIST_STACK"  # Pulumi stack to read `topicArn` from (default: selected)
ENV_STATE_DIR = "MENTORASSIST_STATE_DIR"  # the local stack's state dir (default: .local)
TOPIC_OUTPUT = "topicArn"
LOCAL_OUTPUTS_FILE = "outputs.json"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
PULUMI_TIMEOUT_SECONDS = 60

# SNS limits: 10 message attributes, 10 entries and 256 KB (all entries together) per
# PublishBatch. A message's size is its body plus every attribute's name, type and value.
SNS_MAX_ATTRIBUTES = 10
SNS_MAX_BATCH_ENTRIES = 10
SNS_MAX_BATCH_BYTES = contract.SNS_MAX_MESSAGE_BYTES
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_RESERVED_ATTRIBUTES = frozenset(
    {
        contract.TARGET_USER_ATTRIBUTE,
        contract.BROADCAST_ATTRIBUTE,
        contract.TYPE_ATTRIBUTE,
        contract.NOTIFICATION_ID_ATTRIBUTE,
    }
)
# The envelope's `id` and `sentAt` are filled in by SNS; their longest forms, for sizing:
# a MessageId is a UUID (36 characters), `sentAt` an ISO-8601 time with milliseconds.
_WORST_CASE_MESSAGE_ID = "0" * 36
_WORST_CASE_SENT_AT = "2026-12-03T18:20:40.123Z"


# --- errors ---------------------------------------------------------------------------------


class MentorAssistError(Exception):
    """Base of every error this package raises."""


class TopicNotConfigured(MentorAssistError):
    """No topic ARN in the argument, the environment, a Pulumi stack or the local stack."""


class PublishFailed(MentorAssistError):
    """SNS (or the network to it) refused a publish; `code` is AWS's error code if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class InvalidNotification(MentorAssistError, ValueError):
    """The notification would be refused by SNS or dropped by the publish handler."""


class InvalidTarget(InvalidNotification):
    """The user ids are missing, empty, not strings or too many."""


class InvalidType(InvalidNotification):
    """The event type is not a non-empty string."""


class InvalidId(InvalidNotification):
    """The notification id is not a non-empty string of reasonable length."""


class InvalidData(InvalidNotification):
    """The data cannot be sent (not JSON-serializable, bytes, or an empty message)."""


class InvalidAttributes(InvalidNotification):
    """Extra attributes collide with the contract's, are malformed, or are too many."""


class NotificationTooLarge(InvalidNotification):
    """The envelope exceeds what API Gateway delivers, or the message what SNS accepts."""


# --- notifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One notification: to `user_ids`, or to everyone when `broadcast` is true."""

    data: Any
    user_ids: str | Sequence[str] | None = None
    type: str | None = None
    id: str | None = None
    broadcast: bool = False
    attributes: Mapping[str, str] | None = None

    @classmethod
    def to(
        cls,
        user_ids: str | Sequence[str],
        data: Any,
        *,
        type: str | None = None,
        id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Notification:
        return cls(data, user_ids=user_ids, type=type, id=id, attributes=attributes)

    @classmethod
    def to_everyone(
        cls,
        data: Any,
        *,
        type: str | None = None,
        id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Notification:
        return cls(data, broadcast=True, type=type, id=id, attributes=attributes)


@dataclass(frozen=True)
class Message:
    """A validated notification as SNS takes it: body, attributes and its size in bytes."""

    body: str
    attributes: dict[str, dict[str, str]]
    size: int


@dataclass(frozen=True)
class EntryResult:
    """The outcome of one notification of a batch (`index` is its position in the input)."""

    index: int
    notification: Notification
    message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.message_id is not None


@dataclass
class BatchResult:
    """Every notification of a `send_batch`, in input order, each published or failed."""

    entries: list[EntryResult] = field(default_factory=list)

    @property
    def succeeded(self) -> list[EntryResult]:
        return [entry for entry in self.entries if entry.ok]

    @property
    def failed(self) -> list[EntryResult]:
        return [entry for entry in self.entries if not entry.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def message_ids(self) -> list[str | None]:
        return [entry.message_id for entry in self.entries]


def build_message(notification: Notification) -> Message:
    """Validate a notification and turn it into the SNS message; raises InvalidNotification."""
    attributes: dict[str, dict[str, str]] = {}
    if notification.broadcast:
        if notification.user_ids is not None:
            raise InvalidTarget("a notification is either for user ids or a broadcast, not both")
        attributes[contract.BROADCAST_ATTRIBUTE] = _string(contract.BROADCAST_ALL)
    else:
        attributes[contract.TARGET_USER_ATTRIBUTE] = _target_attribute(notification.user_ids)
    event_type = _event_type(notification.type)
    if notification.type is not None:
        attributes[contract.TYPE_ATTRIBUTE] = _string(event_type)
    if notification.id is not None:
        attributes[contract.NOTIFICATION_ID_ATTRIBUTE] = _string(_notification_id(notification.id))
    attributes.update(_extra_attributes(notification.attributes))
    if len(attributes) > SNS_MAX_ATTRIBUTES:
        raise InvalidAttributes(
            f"{len(attributes)} message attributes; SNS accepts at most {SNS_MAX_ATTRIBUTES}"
        )

    # The handler's own reading of the attributes: what passes here, it accepts.
    as_delivered = {
        name: {"Type": value["DataType"], "Value": value["StringValue"]}
        for name, value in attributes.items()
    }
    try:
        handler_rules.read_target(as_delivered, broadcast_enabled=True)
        handler_rules.read_type(as_delivered)
    except handler_rules.InvalidTarget as invalid:
        raise InvalidTarget(str(invalid)) from None
    if notification.id is not None:
        try:
            handler_rules.read_notification_id(
                {"MessageId": _WORST_CASE_MESSAGE_ID, "MessageAttributes": as_delivered}
            )
        except handler_rules.Rejected as invalid:
            raise InvalidId(str(invalid)) from None

    body = _body(notification.data)
    frame = handler_rules.envelope(
        notification.id or _WORST_CASE_MESSAGE_ID, event_type, body, _WORST_CASE_SENT_AT
    )
    if len(frame) > contract.MAX_MESSAGE_BYTES:
        raise NotificationTooLarge(
            f"the envelope clients receive would be {len(frame)} bytes; API Gateway delivers "
            f"at most {contract.MAX_MESSAGE_BYTES}"
        )
    size = len(body.encode("utf-8")) + sum(
        len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        for name, value in attributes.items()
    )
    if size > contract.SNS_MAX_MESSAGE_BYTES:
        raise NotificationTooLarge(
            f"the SNS message would be {size} bytes (body and attributes); SNS accepts at most "
            f"{contract.SNS_MAX_MESSAGE_BYTES}"
        )
    return Message(body=body, attributes=attributes, size=size)


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _target_attribute(user_ids: Any) -> dict[str, str]:
    if user_ids is None:
        raise InvalidTarget("no user ids: name at least one user, or broadcast")
    if isinstance(user_ids, str):
        ids: list[Any] = [user_ids]
    elif isinstance(user_ids, (bytes, bytearray, Mapping)) or not isinstance(user_ids, Iterable):
        raise InvalidTarget(f"user ids must be a string or a sequence of strings, not {user_ids!r}")
    else:
        ids = list(user_ids)
    if not ids:
        raise InvalidTarget("no user ids: name at least one user, or broadcast")
    for user_id in ids:
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidTarget(f"user ids must be non-empty strings, got {user_id!r}")
    unique = list(dict.fromkeys(ids))  # the handler ignores repeats; so do we
    if len(unique) > contract.MAX_TARGET_USERS:
        raise InvalidTarget(
            f"{len(unique)} users in one notification; at most {contract.MAX_TARGET_USERS} "
            "(send several notifications)"
        )
    if len(unique) == 1:
        return _string(unique[0])
    return {"DataType": "String.Array", "StringValue": json.dumps(unique, ensure_ascii=False)}


def _event_type(event_type: Any) -> str:
    if event_type is None:
        return contract.DEFAULT_TYPE
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidType(f"type must be a non-empty string, got {event_type!r}")
    return event_type


def _notification_id(notification_id: Any) -> str:
    if not isinstance(notification_id, str) or not notification_id.strip():
        raise InvalidId(f"id must be a non-empty string, got {notification_id!r}")
    return notification_id  # its length: the handler's read_notification_id, in build_message


def _extra_attributes(extra: Mapping[str, str] | None) -> dict[str, dict[str, str]]:
    attributes = {}
    for name, value in (extra or {}).items():
        if name in _RESERVED_ATTRIBUTES:
            raise InvalidAttributes(f"attribute {name!r} is set by the publisher itself")
        if (
            not isinstance(name, str)
            or not _ATTRIBUTE_NAME.match(name)
            or name.startswith((".", "AWS.", "Amazon."))
            or name.endswith(".")
            or ".." in name
        ):
            raise InvalidAttributes(f"{name!r} is not a valid SNS attribute name")
        if not isinstance(value, str) or not value:
            raise InvalidAttributes(f"attribute {name!r} must be a non-empty string")
        attributes[name] = _string(value)
    return attributes


def _body(data: Any) -> str:
    if isinstance(data, str):
        body = data
    elif isinstance(data, (bytes, bytearray)):
        raise InvalidData("data is bytes: decode it to a str, or send a JSON value")
    else:
        try:
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidData(f"data is not JSON-serializable: {error}") from None
    if not body:
        raise InvalidData("the message is empty; SNS refuses an empty message")
    return body


# --- the publisher --------------------------------------------------------------------------


class Publisher:
    """Publishes to the notifications topic; one instance can be shared by threads."""

    def __init__(
        self,
        topic_arn: str | None = None,
        *,
        sns_client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        stack: str | None = None,
    ) -> None:
        self.topic_arn = topic_arn or resolve_topic_arn(stack=stack)
        if sns_client is None:
            region = region or region_of(self.topic_arn)
            try:
                sns_client = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
            except BotoCoreError as error:  # no region, credentials that cannot be loaded
                raise PublishFailed(f"cannot create an SNS client: {error}") from error
        self.sns = sns_client

    @classmethod
    def local(cls, state_dir: str | Path | None = None) -> Publisher:
        """A publisher for the running local stack (`python -m local up`)."""
        outputs = read_local_outputs(state_dir)
        sns = boto3.client(
            "sns",
            endpoint_url=outputs["awsEndpointUrl"],
            region_name=outputs["region"],
            **LOCAL_CREDENTIALS,
        )
        return cls(outputs[TOPIC_OUTPUT], sns_client=sns)

    def send(
        self,
        user_ids: str | Sequence[str],
        data: Any,
        *,
        type: str | None = None,
        id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Publish to one user or several (at most 100); returns the SNS MessageId."""
        return self.publish(
            Notification.to(user_ids, data, type=type, id=id, attributes=attributes)
        )

    def broadcast(
        self,
        data: Any,
        *,
        type: str | None = None,
        id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Publish to every connected client (when the stack has broadcast enabled)."""
        return self.publish(Notification.to_everyone(data, type=type, id=id, attributes=attributes))

    def publish(self, notification: Notification) -> str:
        message = build_message(notification)
        try:
            response = self.sns.publish(
                TopicArn=self.topic_arn,
                Message=message.body,
                MessageAttributes=message.attributes,
            )
        except (ClientError, BotoCoreError) as error:
            raise _failed(error) from error
        return str(response["MessageId"])

    def send_batch(self, notifications: Iterable[Notification]) -> BatchResult:
        """Publish many notifications with SNS PublishBatch (10 per request, 256 KB per request).

        Every notification is validated first; an invalid one raises InvalidNotification (its
        message names its index) and nothing is published. Then each notification is either
        published or reported failed in the result, with AWS's error code: none is dropped.
        """
        items = list(notifications)
        messages = []
        for index, notification in enumerate(items):
            try:
                messages.append(build_message(notification))
            except InvalidNotification as invalid:
                raise type(invalid)(f"notification {index}: {invalid}") from None
        result = BatchResult()
        for chunk in _chunks(messages):
            result.entries.extend(self._publish_chunk(chunk, items))
        return result

    def _publish_chunk(
        self, chunk: list[tuple[int, Message]], items: list[Notification]
    ) -> list[EntryResult]:
        entries = [
            {
                "Id": str(index),
                "Message": message.body,
                "MessageAttributes": message.attributes,
            }
            for index, message in chunk
        ]
        try:
            response = self.sns.publish_batch(
                TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
            )
        except (ClientError, BotoCoreError) as error:
            failed = _failed(error)
            return [
                EntryResult(index, items[index], error_code=failed.code, error_message=str(failed))
                for index, _ in chunk
            ]
        published = {entry["Id"]: entry["MessageId"] for entry in response.get("Successful", [])}
        refused = {entry["Id"]: entry for entry in response.get("Failed", [])}
        results = []
        for index, _ in chunk:
            key = str(index)
            if key in published:
                results.append(EntryResult(index, items[index], message_id=published[key]))
            else:
                # An entry SNS reports in neither list is reported failed, not lost.
                failure = refused.get(key, {})
                results.append(
                    EntryResult(
                        index,
                        items[index],
                        error_code=failure.get("Code", "Unreported"),
                        error_message=failure.get("Message", "SNS reported no outcome"),
                    )
                )
        return results


def _chunks(messages: list[Message]) -> Iterator[list[tuple[int, Message]]]:
    chunk: list[tuple[int, Message]] = []
    size = 0
    for index, message in enumerate(messages):
        if chunk and (
            len(chunk) == SNS_MAX_BATCH_ENTRIES or size + message.size > SNS_MAX_BATCH_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append((index, message))
        size += message.size
    if chunk:
        yield chunk


def _failed(error: Exception) -> PublishFailed:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        message = error.response.get("Error", {}).get("Message") or str(error)
        return PublishFailed(f"SNS refused the publish: {code}: {message}", code)
    return PublishFailed(f"could not reach SNS: {error}")


# --- configuration --------------------------------------------------------------------------


def resolve_topic_arn(*, stack: str | None = None) -> str:
    """The topic from MENTORASSIST_TOPIC_ARN, else the Pulumi stack output `topicArn`."""
    from_env = os.environ.get(ENV_TOPIC_ARN, "").strip()
    if from_env:
        return from_env
    stack = stack or os.environ.get(ENV_STACK) or None
    pulumi = shutil.which("pulumi")
    tried = "the pulumi CLI is not on PATH"
    if pulumi:
        command = [pulumi, "stack", "output", TOPIC_OUTPUT, *(["--stack", stack] if stack else [])]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=PULUMI_TIMEOUT_SECONDS
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            tried = f"`{' '.join(command[1:])}` failed: {error}"
        else:
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
            detail = (done.stderr or done.stdout).strip().splitlines()
            tried = f"`pulumi {' '.join(command[1:])}` failed: {detail[-1] if detail else ''}"
    raise TopicNotConfigured(
        "no topic ARN: pass it (Publisher(topic_arn) / --topic-arn), set "
        f"{ENV_TOPIC_ARN}, or run where `pulumi stack output {TOPIC_OUTPUT}` works "
        f"(set {ENV_STACK} to choose the stack; {tried}); for the local stack use "
        "Publisher.local() / --local"
    )


def read_local_outputs(state_dir: str | Path | None = None) -> dict[str, str]:
    """The running local stack's outputs.json (state dir: argument, env, or `.local`)."""
    candidates = (
        [Path(state_dir)]
        if state_dir
        else [Path(os.environ[ENV_STATE_DIR])]
        if os.environ.get(ENV_STATE_DIR)
        else [Path.cwd() / ".local", Path(__file__).resolve().parents[1] / ".local"]
    )
    for directory in candidates:
        path = directory / LOCAL_OUTPUTS_FILE
        try:
            outputs = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except ValueError as error:
            raise TopicNotConfigured(f"{path} is not valid JSON: {error}") from None
        missing = {TOPIC_OUTPUT, "awsEndpointUrl", "region"} - set(outputs)
        if missing:
            raise TopicNotConfigured(f"{path} lacks {', '.join(sorted(missing))}")
        return outputs
    where = " or ".join(str(directory / LOCAL_OUTPUTS_FILE) for directory in candidates)
    raise TopicNotConfigured(
        f"{where} not found: the local stack is not running (start it with `python -m local up`)"
    )


def region_of(topic_arn: str) -> str | None:
    """The region an SNS topic ARN names, or None when it is not a topic ARN."""
    # arn:aws:sns:{region}:{account}:{name}: publish in the topic's own region by default.
    parts = topic_arn.split(":")
    return parts[3] if len(parts) >= 6 and parts[0] == "arn" and parts[3] else None
