"""How API Gateway reads a Lambda REQUEST authorizer's answer.

The authorizer returns an IAM policy; API Gateway allows the request only when an Allow
statement for `execute-api:Invoke` matches the method ARN and no Deny does. The context must be
flat; the integration sees every value as a string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class AuthorizerError(Exception):
    """The authorizer's answer is malformed: API Gateway answers 500."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    principal_id: str
    context: dict[str, str]


def decide(result: Any, method_arn: str) -> Decision:
    if not isinstance(result, dict):
        raise AuthorizerError(f"authorizer returned {type(result).__name__}, not an object")
    principal_id = result.get("principalId")
    policy = result.get("policyDocument")
    if not isinstance(principal_id, str) or not isinstance(policy, dict):
        raise AuthorizerError("authorizer result needs principalId and policyDocument")
    effects = {
        str(statement.get("Effect", "")).lower()
        for statement in _as_list(policy.get("Statement"))
        if isinstance(statement, dict)
        and _any_matches(statement.get("Action"), "execute-api:Invoke")
        and _any_matches(statement.get("Resource"), method_arn)
    }
    allowed = "allow" in effects and "deny" not in effects
    return Decision(allowed, principal_id, _flat_context(result.get("context")))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _any_matches(patterns: Any, value: str) -> bool:
    return any(isinstance(p, str) and _glob(p).fullmatch(value) for p in _as_list(patterns))


def _glob(pattern: str) -> re.Pattern[str]:
    # IAM wildcards: `*` any run of characters (slashes included), `?` one character.
    parts: Iterable[str] = (
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile("".join(parts))


def _flat_context(context: Any) -> dict[str, str]:
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise AuthorizerError("authorizer context must be an object")
    flat = {}
    for key, value in context.items():
        if isinstance(value, bool):
            flat[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            flat[key] = str(value)
        else:
            raise AuthorizerError(f"authorizer context value {key!r} must be a string, "
                                  "number or boolean")  # fmt: skip
    return flat
