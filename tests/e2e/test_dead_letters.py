"""The local stack's dead-letter behaviour is Lambda's: retry a failed asynchronous invocation
twice, then send the on-failure destination record to the dead-letter queue.

A stack whose management API refuses every post (`--management-error-rate 1.0`) cannot deliver
anything: a notification is attempted three times (the same request id each time) and then kept
in the dead-letter queue as the record AWS documents. With the fault switched off at run time
(the local-only `/local/faults` endpoint), the replay tool sends it back through the topic and
it is delivered with its original id.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.e2e.clients import next_frame, open_client, run, to_user
from tests.e2e.conftest import ROOT, LocalStack
from tests.e2e.dead_letters import ON_FAILURE, DeadLetterReader


def _replay(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    """`python -m mentorassist.replay` against the stack, as an operator runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mentorassist.replay",
            "--queue-url",
            stack.outputs["deadLetterQueueUrl"],
            "--topic-arn",
            stack.outputs["topicArn"],
            "--endpoint-url",
            stack.outputs["awsEndpointUrl"],
            "--region",
            stack.outputs["region"],
        ],
        cwd=ROOT,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_undeliverable_notification_is_dead_lettered_after_three_attempts_and_replayed(
    local_stack: Callable[..., LocalStack], user
) -> None:
    broken = local_stack("--management-error-rate", "1.0", "--lambda-retry-delays", "1,1")
    alice = user("alice")
    dead_letters = DeadLetterReader(broken.client("sqs"), broken.outputs["deadLetterQueueUrl"])

    async def scenario() -> tuple[str, str, dict[str, Any], int]:
        async with open_client(broken.url(broken.token(alice))) as ws:
            (connection_id,) = broken.sessions_of(alice)
            payload = {"text": "undeliverable for now"}
            message_id = await asyncio.to_thread(
                broken.publish, json.dumps(payload), to_user(alice)
            )
            letter = await asyncio.to_thread(dead_letters.wait_for, message_id, 90)
            assert letter.kind == ON_FAILURE

            healed_at = len(broken.lines)
            # Heal the stack, then replay: the notification arrives with its original id.
            assert broken.faults(management_error_rate=0.0)["faults"]["management_error_rate"] == 0
            dead_letters.release()
            replayed = await asyncio.to_thread(_replay, broken)
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            frame = await next_frame(ws, timeout=30)
        return message_id, connection_id, frame, healed_at

    message_id, connection_id, frame, healed_at = run(scenario())
    assert frame["id"] == message_id
    assert frame["data"] == {"text": "undeliverable for now"}
    # Replay deleted the record: the queue is empty.
    sqs = broken.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=broken.outputs["deadLetterQueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    # Until the stack was healed every post was refused: none reached the client.
    posts = [
        line for line in broken.lines[:healed_at] if f"@connections POST {connection_id}" in line
    ]
    assert posts and not any(line.endswith("-> 200") for line in posts)
    (letter,) = [x for x in dead_letters.letters.values() if x.message_id == message_id]
    record = letter.body

    assert set(record) == {
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    }
    assert record["version"] == "1.0"
    datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    context = record["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 3
    function = broken.outputs["publishFunction"]
    assert context["functionArn"] == (
        f"arn:aws:lambda:{broken.outputs['region']}:123456789012:function:{function}:$LATEST"
    )
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    error = record["responsePayload"]
    assert error["errorType"] and error["errorMessage"]
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]
    (sns_record,) = record["requestPayload"]["Records"]
    assert sns_record["EventSource"] == "aws:sns"
    assert sns_record["Sns"]["MessageId"] == message_id
    assert json.loads(sns_record["Sns"]["Message"]) == {"text": "undeliverable for now"}
    assert sns_record["Sns"]["MessageAttributes"]["userId"] == {"Type": "String", "Value": alice}

    # Three attempts, one asynchronous invocation: the delivery log counts them.
    broken.wait_for_log(f"publish message={message_id}", "attempt 3/3", "retries exhausted")
    attempts = [line for line in broken.lines if f"publish message={message_id}" in line]
    numbers = [re.findall(r"attempt (\d)/3", line) for line in attempts]
    assert numbers == [["1"], ["2"], ["3"]]
    assert "retries exhausted" in attempts[-1]
    faults = broken.faults()
    assert faults["injected"]["management_error"] >= 3
