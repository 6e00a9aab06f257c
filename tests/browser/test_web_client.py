"""The browser client (clients/web/mentorassist.js) on the local demo page, in headless Chromium.

Each test drives the page as a person would (type a user id, press Connect) and asserts what the
page shows: the connection state in `#state[data-state]` and one `<li data-id=…>` per
notification. The server side is real: boto3 publishes to the emulator's SNS topic, the
management API drops connections, and the gateway's log shows every handshake. Tests wait on
page conditions and log lines; the only timed wait is the window in which a stopped client must
stay silent.
"""

from __future__ import annotations

import inspect
import json
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from functions import contract
from functions import publish as publish_handler
from functions.tokens import issue_token
from tests.e2e.clients import of_type, to_user
from tests.e2e.conftest import LocalStack

# Quick timings for the tests, passed to the client through the demo page's query string.
FAST_BACKOFF = {"initialBackoffMs": 100, "maxBackoffMs": 400}
REFUSED_LINE = "authorizer: Unauthorized -> 401"


class DemoPage:
    """The local demo page, seen through what it renders."""

    def __init__(self, page: Page, stack: LocalStack) -> None:
        self.page = page
        self.stack = stack

    def open(self, **options: Any) -> DemoPage:
        query = "&".join(f"{name}={value}" for name, value in options.items())
        self.page.goto(base_url(self.stack) + (f"?{query}" if query else ""))
        expect(self.state).to_have_attribute("data-state", "closed")
        return self

    def connect(self, user_id: str) -> None:
        self.page.fill("#user", user_id)
        self.page.click("#connect")

    @property
    def state(self) -> Any:
        return self.page.locator("#state")

    def expect_state(self, state: str, timeout: float = 15_000) -> None:
        expect(self.state).to_have_attribute("data-state", state, timeout=timeout)

    def notification(self, envelope_id: str) -> Any:
        return self.page.locator(f'#notifications li[data-id="{envelope_id}"]')

    def states(self) -> list[str]:
        return self.page.evaluate("window.demo.states")

    def token_requests(self) -> int:
        return self.page.evaluate("window.demo.tokenRequests")

    def wait_for_states(self, *sequence: str) -> None:
        """Wait until the page has gone through `sequence` (in order, others in between)."""
        self.page.wait_for_function(
            """(wanted) => {
                let next = 0;
                for (const state of window.demo.states) if (state === wanted[next]) next += 1;
                return next >= wanted.length;
            }""",
            arg=list(sequence),
        )


def base_url(stack: LocalStack) -> str:
    # websocketUrl is ws://host:port/{stage}; the demo page is served at http://host:port/.
    host = stack.outputs["websocketUrl"].split("://", 1)[1].split("/", 1)[0]
    return f"http://{host}/"


def wait_for_lines(stack: LocalStack, fragment: str, count: int, start: int) -> list[str]:
    """The first `count` log lines from index `start` on that contain `fragment`."""
    lines: list[str] = []
    index = start
    while len(lines) < count:
        line = stack.wait_for_line(lambda text: fragment in text, start=index)
        index = stack.lines.index(line, index) + 1
        lines.append(line)
    return lines


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo(page: Page, stack: LocalStack) -> DemoPage:
    return DemoPage(page, stack)


def only_connection(stack: LocalStack, user_id: str) -> str:
    connections = stack.sessions_of(user_id)
    assert len(connections) == 1, connections
    return connections[0]


def envelope(envelope_id: str, data: Any, kind: str = "chat") -> bytes:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    frame = {"id": envelope_id, "type": kind, "data": data, "sentAt": sent_at}
    return json.dumps(frame).encode()


def test_a_published_notification_appears_on_the_page(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str], screenshot: Any
) -> None:
    alice = user("alice")
    demo.open()
    demo.connect(alice)
    demo.expect_state("open")

    message_id = stack.publish(
        json.dumps({"text": "Your mentor replied", "threadId": "t-7"}),
        {**to_user(alice), **of_type("chat")},
    )

    item = demo.notification(message_id)
    expect(item).to_be_visible()
    expect(item).to_have_attribute("data-type", "chat")
    expect(item).to_contain_text("Your mentor replied")
    expect(demo.page.locator("#count")).to_have_text("1 received")

    # The page's own form publishes to SNS too (to the connected user unless edited).
    demo.page.fill("#message", '{"text": "sent from the page"}')
    demo.page.click("#publish")
    result = demo.page.locator("#publish-result")
    expect(result).to_contain_text("Published, MessageId ")
    from_page = result.inner_text().rsplit(" ", 1)[1]
    expect(demo.notification(from_page)).to_contain_text("sent from the page")
    expect(demo.page.locator("#count")).to_have_text("2 received")
    path: Path = screenshot("notification")
    assert path.stat().st_size > 0


def test_the_client_reconnects_after_the_gateway_drops_it(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str], screenshot: Any
) -> None:
    bob = user("bob")
    demo.open(**FAST_BACKOFF)
    demo.connect(bob)
    demo.expect_state("open")
    dropped = only_connection(stack, bob)
    assert demo.token_requests() == 1

    # The backend deletes the connection (API Gateway closes it with 1000).
    stack.management().delete_connection(ConnectionId=dropped)

    demo.wait_for_states("connecting", "open", "reconnecting", "open")
    demo.expect_state("open")
    # The reconnect asked for a fresh token and is a new connection of the same user.
    assert demo.token_requests() == 2
    stack.wait_for_log(f"conn={dropped} $disconnect")
    reconnected = only_connection(stack, bob)
    assert reconnected != dropped

    message_id = stack.publish(json.dumps({"text": "after the drop"}), to_user(bob))
    expect(demo.notification(message_id)).to_contain_text("after the drop")
    screenshot("reconnected")


@pytest.mark.parametrize("kind", ["forged", "expired"])
def test_a_refused_token_stops_reconnecting(
    demo: DemoPage,
    stack: LocalStack,
    user: Callable[[str], str],
    screenshot: Any,
    kind: str,
) -> None:
    mallory = user("mallory")
    if kind == "forged":
        token = issue_token(mallory, "not-the-stack-key")
    else:
        token = stack.token(mallory, now=time.time() - 7200, ttl_seconds=60)
    handed_out: list[str] = []

    def token_endpoint(route: Route) -> None:
        # The page's token provider asks /local/token on every (re)connect: answer with the
        # refused token each time.
        handed_out.append(token)
        body = {"token": token, "websocketUrl": stack.outputs["websocketUrl"]}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    demo.page.route("**/local/token?**", token_endpoint)
    start = len(stack.lines)
    demo.open(**FAST_BACKOFF)
    demo.connect(mallory)

    demo.expect_state("unauthorized")
    max_refusals = 3
    refused = wait_for_lines(stack, REFUSED_LINE, max_refusals, start)
    assert len(handed_out) == max_refusals == demo.token_requests()
    assert demo.states() == ["connecting", "reconnecting", "reconnecting", "unauthorized"]
    expect(demo.page.locator("#connect")).to_be_enabled()

    # Silence afterwards: a client that meant to retry would have done so within the longest
    # backoff (400 ms here) plus a handshake; watch for several times that long.
    demo.page.wait_for_timeout(2_000)
    assert [line for line in stack.lines[start:] if REFUSED_LINE in line] == refused
    assert len(handed_out) == max_refusals
    demo.expect_state("unauthorized")
    screenshot("unauthorized")


def test_an_unreachable_server_is_retried_not_taken_for_a_refusal(
    page: Page, stack: LocalStack
) -> None:
    # The refused-token rule must not give up during an outage: with nothing listening, the
    # reachability probe fails too, so the client keeps retrying past maxRefusals.
    page.goto(base_url(stack))
    page.evaluate(
        """async ({url, token}) => {
            const { createClient } = await import("/clients/web/mentorassist.js");
            window.probe = { states: [], tokens: 0 };
            const client = createClient({
                url, backoff: { initialMs: 50, maxMs: 200 },
                token: async () => { window.probe.tokens += 1; return token; },
            });
            client.onState((state) => window.probe.states.push(state));
            client.connect();
        }""",
        {"url": f"ws://127.0.0.1:{free_port()}/dev", "token": issue_token("nobody", "any-key")},
    )
    page.wait_for_function("window.probe.tokens >= 6")
    states = page.evaluate("window.probe.states")
    assert "unauthorized" not in states
    assert set(states) == {"connecting", "reconnecting"}


def test_a_duplicate_envelope_shows_once(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str]
) -> None:
    carol = user("carol")
    demo.open()
    demo.connect(carol)
    demo.expect_state("open")
    connection = only_connection(stack, carol)
    management = stack.management()

    duplicate = f"dup-{uuid.uuid4()}"
    # The same envelope twice, as an at-least-once retry delivers it, then a different one.
    management.post_to_connection(ConnectionId=connection, Data=envelope(duplicate, {"n": 1}))
    management.post_to_connection(ConnectionId=connection, Data=envelope(duplicate, {"n": 1}))
    marker = f"marker-{uuid.uuid4()}"
    management.post_to_connection(ConnectionId=connection, Data=envelope(marker, {"n": 2}))

    # Frames on one connection arrive in order: once the marker shows, both copies were seen.
    expect(demo.notification(marker)).to_be_visible()
    expect(demo.notification(duplicate)).to_have_count(1)
    expect(demo.page.locator("#count")).to_have_text("2 received")


def test_a_notification_published_twice_with_one_id_shows_once(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str]
) -> None:
    if "NOTIFICATION_ID_ATTRIBUTE" not in inspect.getsource(publish_handler):
        pytest.skip("the publish handler does not read the notificationId attribute yet")
    grace = user("grace")
    demo.open()
    demo.connect(grace)
    demo.expect_state("open")
    connection = only_connection(stack, grace)
    start = len(stack.lines)

    notification_id = f"n-{uuid.uuid4()}"
    stable_id = {
        contract.NOTIFICATION_ID_ATTRIBUTE: {"DataType": "String", "StringValue": notification_id}
    }
    # A backend retrying its own publish: two SNS messages, one notification.
    for message_id in [
        stack.publish(json.dumps({"text": "once"}), {**to_user(grace), **stable_id}),
        stack.publish(json.dumps({"text": "once"}), {**to_user(grace), **stable_id}),
    ]:
        stack.wait_published(message_id)
    # Both were posted to the connection before this one is published: when it shows, both
    # copies have reached the page.
    marker = stack.publish(json.dumps({"text": "marker"}), to_user(grace))

    expect(demo.notification(marker)).to_be_visible()
    # The server did send three frames; the page shows two notifications.
    wait_for_lines(stack, f"@connections POST {connection} -> 200", 3, start)
    expect(demo.notification(notification_id)).to_have_count(1)
    expect(demo.page.locator("#count")).to_have_text("2 received")


def test_pings_keep_the_connection_alive(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str]
) -> None:
    dave = user("dave")
    start = len(stack.lines)
    demo.open(pingIntervalMs=200)
    demo.connect(dave)
    demo.expect_state("open")
    connection = only_connection(stack, dave)
    # Each {"action":"ping"} reaches $default, which answers the pong the client swallows.
    wait_for_lines(stack, f"conn={connection} $default -> 200", 3, start)
    expect(demo.page.locator("#notifications li.error")).to_have_count(0)
    demo.expect_state("open")


def test_the_connection_is_replaced_before_its_age_limit_without_a_gap(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str]
) -> None:
    erin = user("erin")
    start = len(stack.lines)
    demo.open(maxConnectionAgeMs=1_500)
    demo.connect(erin)
    demo.expect_state("open")
    first = only_connection(stack, erin)

    # Before the age limit the client opens a second connection, and only then closes the
    # first itself (1000, "replaced"); the app sees no state change.
    opened = wait_for_lines(stack, "OPEN user-agent=", 2, start)
    assert f"conn={first} " in opened[0] and f"conn={first} " not in opened[1]
    stack.wait_for_log(f"conn={first} CLOSED code=1000 reason='replaced'")
    assert demo.states() == ["connecting", "open"]

    message_id = stack.publish(json.dumps({"text": "still here"}), to_user(erin))
    expect(demo.notification(message_id)).to_be_visible()
    expect(demo.notification(message_id)).to_have_count(1)
    assert demo.states() == ["connecting", "open"]


def test_the_demo_page_imports_the_client_module(page: Page, stack: LocalStack) -> None:
    response = page.goto(base_url(stack) + "clients/web/mentorassist.js")
    assert response is not None and response.ok
    assert "javascript" in (response.header_value("content-type") or "")


def test_error_frames_are_shown_and_pongs_are_not(
    demo: DemoPage, stack: LocalStack, user: Callable[[str], str]
) -> None:
    frank = user("frank")
    demo.open()
    demo.connect(frank)
    demo.expect_state("open")
    connection = only_connection(stack, frank)
    management = stack.management()
    replies = [
        {"type": "pong"},
        {"type": "error", "code": "unknown_action", "message": 'supported: "ping"'},
        # API Gateway's own frame when an integration fails: no type, a message.
        {"message": "Internal server error", "connectionId": connection, "requestId": "r-1"},
    ]
    for reply in replies:
        management.post_to_connection(ConnectionId=connection, Data=json.dumps(reply).encode())
    marker = f"marker-{uuid.uuid4()}"
    management.post_to_connection(ConnectionId=connection, Data=envelope(marker, "after"))

    expect(demo.notification(marker)).to_be_visible()
    errors = demo.page.locator("#notifications li.error")
    expect(errors).to_have_count(2)
    expect(errors.nth(1)).to_contain_text("unknown_action")
    expect(errors.nth(0)).to_contain_text("Internal server error")
    expect(demo.page.locator("#count")).to_have_text("1 received")
    demo.expect_state("open")


def test_token_inspection_and_backoff_bounds(page: Page, stack: LocalStack) -> None:
    page.goto(base_url(stack))
    now = time.time()
    result = page.evaluate(
        """async (tokens) => {
            const m = await import("/clients/web/mentorassist.js");
            const delays = [];
            const backoff = { initialMs: 1000, maxMs: 30000 };
            for (let attempt = 0; attempt < 12; attempt += 1) {
                for (let i = 0; i < 50; i += 1) {
                    delays.push([attempt, m.backoffDelay(attempt, backoff)]);
                }
            }
            return {
                problems: Object.fromEntries(
                    Object.entries(tokens).map(([name, token]) => [name, m.tokenProblem(token)])
                ),
                delays,
                url: m.withToken("wss://example.test/dev", "a b+c"),
            };
        }""",
        {
            "valid": issue_token("u", "k"),
            "expired": issue_token("u", "k", now=now - 3600, ttl_seconds=60),
            # Within the server's 30 s tolerance: still worth a handshake.
            "just_expired": issue_token("u", "k", now=now - 70, ttl_seconds=60),
            "opaque": "opaque-session-token",
            "two_parts": "eyJhbGciOiJIUzI1NiJ9.e30",
        },
    )
    assert result["problems"] == {
        "valid": None,
        "expired": "expired",
        "just_expired": None,
        "opaque": "not a JWT",
        "two_parts": "not a JWT",
    }
    for attempt, delay in result["delays"]:
        assert 0 <= delay < min(30_000, 1_000 * 2**attempt)
    assert result["url"] == "wss://example.test/dev?token=a%20b%2Bc"
