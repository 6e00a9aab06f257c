"""Every way a handshake can fail to prove who it is, each refused before `$connect`.

Run against a stack that requires a token issuer and audience (set on its command line), so
the wrong-issuer and wrong-audience cases are real. For each refusal: the handshake answers 401,
the log names the reason (the gateway's "no token" refusal, or the authorizer's reason code),
`$connect` never runs for that connection, and the user has no session row. A valid token on the
same stack connects, so each refusal is down to the one thing that case got wrong.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from functions.tokens import issue_token
from tests.e2e.clients import open_client, run
from tests.e2e.conftest import STRICT_AUDIENCE, STRICT_ISSUER, LocalStack

WRONG_KEY = "not-the-stack-key-but-long-enough-0123456789abcdef"


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _alg_none(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 600}
    claims |= {"iss": STRICT_ISSUER, "aud": STRICT_AUDIENCE}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


@dataclass(frozen=True)
class Attempt:
    """How a case presents its token: query parameter, Authorization header or subprotocol."""

    token: str | None
    where: str = "query"


def _valid(stack: LocalStack, user_id: str, **overrides: Any) -> str:
    claims: dict[str, Any] = {"issuer": STRICT_ISSUER, "audience": STRICT_AUDIENCE}
    return issue_token(user_id, stack.secret(), **{**claims, **overrides})


CASES: dict[str, tuple[Callable[[LocalStack, str], Attempt], str]] = {
    # case: (the attempt, the reason the log gives)
    "missing-token": (lambda stack, user: Attempt(None), "no token query parameter"),
    "empty-token": (lambda stack, user: Attempt(""), "no token query parameter"),
    "malformed-jwt": (lambda stack, user: Attempt("not-a.jwt"), "reason=malformed"),
    "garbage-segments": (lambda stack, user: Attempt("a.b.c"), "reason=malformed"),
    "alg-none": (lambda stack, user: Attempt(_alg_none(user)), "reason=unsupported_alg"),
    "wrong-key": (
        lambda stack, user: Attempt(
            issue_token(user, WRONG_KEY, issuer=STRICT_ISSUER, audience=STRICT_AUDIENCE)
        ),
        "reason=bad_signature",
    ),
    "expired": (
        lambda stack, user: Attempt(_valid(stack, user, now=time.time() - 7200, ttl_seconds=60)),
        "reason=expired",
    ),
    "not-yet-valid": (
        lambda stack, user: Attempt(_valid(stack, user, not_before=time.time() + 3600)),
        "reason=not_yet_valid",
    ),
    "wrong-issuer": (
        lambda stack, user: Attempt(_valid(stack, user, issuer="https://elsewhere.invalid")),
        "reason=wrong_issuer",
    ),
    "no-issuer": (
        lambda stack, user: Attempt(issue_token(user, stack.secret(), audience=STRICT_AUDIENCE)),
        "reason=wrong_issuer",
    ),
    "wrong-audience": (
        lambda stack, user: Attempt(_valid(stack, user, audience="another-app")),
        "reason=wrong_audience",
    ),
    "token-in-authorization-header": (
        lambda stack, user: Attempt(_valid(stack, user), where="header"),
        "no token query parameter",
    ),
    "token-in-subprotocol": (
        lambda stack, user: Attempt(_valid(stack, user), where="subprotocol"),
        "no token query parameter",
    ),
}


def _refusal(stack: LocalStack, attempt: Attempt) -> int:
    url = stack.url(attempt.token if attempt.where == "query" else None)
    headers = {"Authorization": f"Bearer {attempt.token}"} if attempt.where == "header" else None
    subprotocols = [attempt.token] if attempt.where == "subprotocol" and attempt.token else None

    async def handshake() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with open_client(url, subprotocols=subprotocols, headers=headers):
                pass
        return refused.value.response.status_code

    return run(handshake())


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_credential_is_refused_at_the_handshake_and_never_reaches_connect(
    strict_stack: LocalStack, user: Callable[[str], str], case: str
) -> None:
    make_attempt, reason = CASES[case]
    mallory = user("mallory")
    mark = len(strict_stack.lines)

    assert _refusal(strict_stack, make_attempt(strict_stack, mallory)) == 401

    refused = strict_stack.wait_for_line(lambda line: reason in line, start=mark)
    if "conn=" in refused or "connectionId=" in refused:
        connection_id = re.search(r"(?:conn=|connectionId=)(\S+?)[\s\]]", refused + " ")
        assert connection_id is not None
        # The gateway's own verdict on that connection follows the authorizer's log line.
        strict_stack.wait_for_log(f"conn={connection_id.group(1)} authorizer: Unauthorized -> 401")
    # No `$connect` ran for it (tests run one at a time: nothing else connects meanwhile).
    assert not any("$connect ->" in line for line in strict_stack.lines[mark:])
    assert not any(mallory in line for line in strict_stack.lines[mark:])
    assert strict_stack.sessions_of(mallory) == []


def test_the_same_stack_accepts_a_valid_token_with_its_issuer_and_audience(
    strict_stack: LocalStack, user: Callable[[str], str]
) -> None:
    alice = user("alice")

    async def scenario() -> None:
        async with open_client(strict_stack.url(_valid(strict_stack, alice))):
            assert len(strict_stack.sessions_of(alice)) == 1

    run(scenario())
    assert strict_stack.outputs["jwtIssuer"] == STRICT_ISSUER
    assert strict_stack.outputs["jwtAudience"] == STRICT_AUDIENCE
