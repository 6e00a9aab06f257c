"""The client's state machine in Chromium with a scripted WebSocket (`options.WebSocket`).

The end-to-end browser tests cover what the local stack can make happen; these cover the
moments a real server cannot be timed into: a ping with no answer, the old connection closing
while its replacement is still connecting, duplicate ids past the dedupe window, a listener that
throws. Each scenario runs in the page and waits on conditions, not on fixed delays.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from functions.tokens import issue_token
from tests.browser.test_web_client import base_url
from tests.e2e.conftest import LocalStack

# A scripted WebSocket: the test accepts, refuses, closes and delivers by hand.
FAKE_SOCKET = """
window.FakeSocket = class FakeSocket {
    static all = [];
    constructor(url) {
        this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null;
        FakeSocket.all.push(this);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close(code, reason) {
        if (this.readyState >= 2) return;
        this.readyState = 3; this.closedWith = [code, reason];
        queueMicrotask(() => this.onclose && this.onclose({ code: code || 1005, reason }));
    }
    accept() { this.readyState = 1; this.onopen && this.onopen({}); }
    serverClose(code) {
        this.readyState = 3; this.onclose && this.onclose({ code, reason: "" });
    }
    deliver(frame) { this.onmessage && this.onmessage({ data: JSON.stringify(frame) }); }
};
window.until = async (condition, what, timeoutMs = 5000) => {
    const deadline = performance.now() + timeoutMs;
    while (!condition()) {
        if (performance.now() > deadline) throw new Error("timed out waiting for " + what);
        await new Promise((resolve) => setTimeout(resolve, 5));
    }
};
null;  // the value of the script (Playwright would call a function value)
"""


@pytest.fixture
def scripted(page: Page, stack: LocalStack) -> Page:
    page.goto(base_url(stack))
    page.evaluate(FAKE_SOCKET)
    return page


def run(page: Page, body: str, token: str) -> Any:
    return page.evaluate(
        """async ({ body, token }) => {
            const m = await import("/clients/web/mentorassist.js");
            FakeSocket.all.length = 0;
            const states = [];
            const make = (options) => {
                const client = m.createClient({
                    url: "ws://127.0.0.1:1/dev", token: async () => token,
                    WebSocket: FakeSocket, ...options,
                });
                client.onState((state) => states.push(state));
                return client;
            };
            const scenario = new Function(
                "m", "make", "states", "FakeSocket", "until",
                "return (async () => {" + body + "})();"
            );
            return scenario(m, make, states, FakeSocket, until);
        }""",
        {"body": body, "token": token},
    )


def token() -> str:
    return issue_token("scripted", "any-key")


def test_a_ping_without_answer_abandons_the_connection_and_reconnects(scripted: Page) -> None:
    result = run(
        scripted,
        """
        const client = make({ pingIntervalMs: 30, pongTimeoutMs: 60,
                              backoff: { initialMs: 1, maxMs: 2 } });
        client.connect();
        await until(() => FakeSocket.all.length === 1, "the first socket");
        const first = FakeSocket.all[0];
        first.accept();
        await until(() => first.sent.length >= 1, "a ping");
        await until(() => FakeSocket.all.length === 2, "a second socket");
        FakeSocket.all[1].accept();
        client.close();
        return { ping: first.sent[0], closedWith: first.closedWith, states,
                 url: first.url };
        """,
        token(),
    )
    assert result["ping"] == {"action": "ping"}
    assert result["closedWith"] == [4000, "pong timeout"]
    assert result["states"] == ["connecting", "open", "reconnecting", "open", "closed"]
    assert result["url"].startswith("ws://127.0.0.1:1/dev?token=ey")


def test_answered_pings_keep_the_connection(scripted: Page) -> None:
    result = run(
        scripted,
        """
        const client = make({ pingIntervalMs: 20, pongTimeoutMs: 40 });
        client.connect();
        await until(() => FakeSocket.all.length === 1, "the socket");
        const socket = FakeSocket.all[0];
        socket.accept();
        let answered = 0;
        while (answered < 5) {
            await until(() => socket.sent.length > answered, "ping " + answered);
            socket.deliver({ type: "pong" });
            answered += 1;
        }
        const result = { states: [...states], sockets: FakeSocket.all.length,
                         closedWith: socket.closedWith };
        client.close();
        return result;
        """,
        token(),
    )
    assert result == {"states": ["connecting", "open"], "sockets": 1, "closedWith": None}


def test_the_old_connection_closing_during_its_replacement_leaves_one_connection(
    scripted: Page,
) -> None:
    result = run(
        scripted,
        """
        const slow = { initialMs: 60000, maxMs: 60000 };
        const client = make({ maxConnectionAgeMs: 40, backoff: slow });
        client.connect();
        await until(() => FakeSocket.all.length === 1, "the first socket");
        const [old] = FakeSocket.all;
        old.accept();
        await until(() => FakeSocket.all.length === 2, "the replacement");
        const replacement = FakeSocket.all[1];
        old.serverClose(1001);            // the cap arrives while the replacement connects
        const whileWaiting = client.state;
        replacement.accept();
        // A reconnect still pending would be made at once on "online": there must be none.
        window.dispatchEvent(new Event("online"));
        await new Promise((resolve) => setTimeout(resolve, 0));
        const result = { whileWaiting, states: [...states], sockets: FakeSocket.all.length,
                         replacementOpen: replacement.closedWith === null };
        client.close();
        return result;
        """,
        token(),
    )
    assert result == {
        "whileWaiting": "reconnecting",
        "states": ["connecting", "open", "reconnecting", "open"],
        "sockets": 2,
        "replacementOpen": True,
    }


def test_dedupe_window_is_bounded_and_least_recently_seen_goes_first(scripted: Page) -> None:
    result = run(
        scripted,
        """
        const client = make({ dedupeWindow: 2 });
        const got = [];
        client.onAny((envelope) => got.push(envelope.id));
        client.connect();
        await until(() => FakeSocket.all.length === 1, "the socket");
        const socket = FakeSocket.all[0];
        socket.accept();
        const send = (id) => socket.deliver({ id, type: "t", data: null, sentAt: "x" });
        // a, b, a (duplicate: a is recent again), c (evicts b), a (still a duplicate), b (new)
        for (const id of ["a", "b", "a", "c", "a", "b"]) send(id);
        client.close();
        return got;
        """,
        token(),
    )
    assert result == ["a", "b", "c", "b"]


def test_a_throwing_listener_does_not_stop_the_others(scripted: Page) -> None:
    with scripted.expect_event("pageerror") as reported:
        result = run(
            scripted,
            """
            const client = make({});
            const typed = [], all = [];
            client.on("chat", () => { throw new Error("listener bug"); });
            client.on("chat", (envelope) => typed.push(envelope.data));
            client.on("other", (envelope) => typed.push("wrong " + envelope.data));
            client.onAny((envelope) => all.push(envelope.type));
            const unsubscribe = client.onAny(() => all.push("unsubscribed"));
            unsubscribe();
            client.connect();
            await until(() => FakeSocket.all.length === 1, "the socket");
            const socket = FakeSocket.all[0];
            socket.accept();
            socket.deliver({ id: "1", type: "chat", data: "hi", sentAt: "x" });
            socket.deliver({ id: "2", type: "chat", data: "again", sentAt: "x" });
            client.close();
            return { typed, all, state: client.state };
            """,
            token(),
        )
    assert result == {"typed": ["hi", "again"], "all": ["chat", "chat"], "state": "closed"}
    # The listener's error is not swallowed: it surfaces as an uncaught error in the page.
    assert "listener bug" in str(reported.value)
