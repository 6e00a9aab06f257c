"""Publishing through SNS reaches exactly the connections of the users a message names."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.clients import (
    assert_envelope,
    next_frame,
    of_type,
    open_client,
    run,
    to_user,
    to_users,
)
from tests.e2e.conftest import LocalStack
from tests.e2e.dead_letters import DeadLetterReader


def test_a_user_gets_it_on_every_connection_once_and_nobody_else(stack: LocalStack, user) -> None:
    alice, bob = user("alice"), user("bob")

    async def scenario() -> None:
        async with (
            open_client(stack.url(stack.token(alice)), user_agent="web") as web,
            open_client(stack.url(stack.token(alice)), user_agent="mobile") as mobile,
            open_client(stack.url(stack.token(bob))) as bob_ws,
        ):
            payload = {"text": "Your mentor replied", "thread": 42}
            message_id = await asyncio.to_thread(
                stack.publish, json.dumps(payload), {**to_user(alice), **of_type("chat")}
            )
            for ws in (web, mobile):
                frame = await next_frame(ws)
                assert_envelope(frame, id=message_id, type="chat", data=payload)
            # Once the handler is done with it, a marker to everyone proves by order that
            # alice got no duplicate and bob got nothing.
            await asyncio.to_thread(stack.wait_published, message_id)
            marker = await asyncio.to_thread(stack.publish, "marker", to_users(alice, bob))
            for ws in (web, mobile, bob_ws):
                frame = await next_frame(ws)
                assert frame["id"] == marker
                assert frame["data"] == "marker"
                assert frame["type"] == "notification"

    run(scenario())


def test_a_string_array_target_reaches_every_named_user(stack: LocalStack, user) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")

    async def scenario() -> None:
        async with (
            open_client(stack.url(stack.token(alice)), user_agent="web") as web,
            open_client(stack.url(stack.token(alice)), user_agent="mobile") as mobile,
            open_client(stack.url(stack.token(bob))) as bob_ws,
            open_client(stack.url(stack.token(carol))) as carol_ws,
        ):
            message_id = await asyncio.to_thread(
                stack.publish, "plain text stays a string", to_users(alice, bob)
            )
            for ws in (web, mobile, bob_ws):
                frame = await next_frame(ws)
                assert frame["id"] == message_id
                assert frame["data"] == "plain text stays a string"
            await asyncio.to_thread(stack.wait_published, message_id)
            marker = await asyncio.to_thread(stack.publish, "marker", to_user(carol))
            assert (await next_frame(carol_ws))["id"] == marker

    run(scenario())


def test_a_message_naming_no_target_reaches_nobody_and_invokes_nothing(
    stack: LocalStack, user
) -> None:
    alice = user("alice")

    async def scenario() -> None:
        async with open_client(stack.url(stack.token(alice))) as ws:
            untargeted = await asyncio.to_thread(stack.publish, "to nobody", of_type("chat"))
            marker = await asyncio.to_thread(stack.publish, "marker", to_user(alice))
            frame = await next_frame(ws)
            assert frame["id"] == marker
            await asyncio.to_thread(stack.wait_published, marker)
        # The filter policy kept it from the publish function altogether.
        assert untargeted not in stack.log_text()

    run(scenario())


def test_broadcast_reaches_every_connected_client(stack: LocalStack, user) -> None:
    alice, bob = user("alice"), user("bob")

    async def scenario() -> None:
        async with (
            open_client(stack.url(stack.token(alice))) as alice_ws,
            open_client(stack.url(stack.token(bob))) as bob_ws,
        ):
            attributes = {"broadcast": {"DataType": "String", "StringValue": "all"}}
            message_id = await asyncio.to_thread(stack.publish, "{}", attributes)
            for ws in (alice_ws, bob_ws):
                frame = await next_frame(ws)
                assert frame["id"] == message_id
                assert frame["data"] == {}

    run(scenario())


def test_an_oversized_notification_is_dead_lettered_not_dropped(stack: LocalStack, user) -> None:
    # SNS takes 256 KB, API Gateway delivers 128 KB: the publish function cannot deliver the
    # envelope, and the notification ends in the dead-letter queue instead of disappearing.
    alice = user("alice")
    message_id = stack.publish("x" * (200 * 1024), to_user(alice))
    dead_letters = DeadLetterReader(stack.client("sqs"), stack.outputs["deadLetterQueueUrl"])
    letter = dead_letters.wait_for(message_id)
    assert letter.reason
