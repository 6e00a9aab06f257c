"""A stack's typed settings, read from the config declared in `Pulumi.yaml`.

Both the Pulumi program and the local stack build their `StackSettings` here, so the defaults in
`Pulumi.yaml` are the only defaults. This module does not import Pulumi: the local stack uses it
without the Pulumi runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from functions.contract import CONNECTION_MAX_SECONDS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = PROJECT_ROOT / "Pulumi.yaml"

# Values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


class SettingsError(ValueError):
    """A config value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class StackSettings:
    stage_name: str
    jwt_issuer: str
    jwt_audience: str
    connection_ttl_seconds: int
    log_retention_days: int
    throttling_burst_limit: int
    throttling_rate_limit: float
    lambda_architecture: str
    lambda_memory_mb: int
    publish_timeout_seconds: int
    publish_concurrency: int
    broadcast_enabled: bool
    manage_api_gateway_account: bool

    def __post_init__(self) -> None:
        checks = [
            (bool(self.stage_name) and self.stage_name.replace("-", "").replace("_", "").isalnum(),
             "stageName must be letters, digits, '-' or '_'"),
            (self.connection_ttl_seconds > CONNECTION_MAX_SECONDS,
             f"connectionTtlSeconds must exceed the {CONNECTION_MAX_SECONDS}s connection cap"),
            (self.log_retention_days in LOG_RETENTION_DAYS,
             f"logRetentionDays must be one of {LOG_RETENTION_DAYS}"),
            (self.throttling_burst_limit > 0, "throttlingBurstLimit must be positive"),
            (self.throttling_rate_limit > 0, "throttlingRateLimit must be positive"),
            (self.lambda_architecture in ("arm64", "x86_64"),
             "lambdaArchitecture must be arm64 or x86_64"),
            (128 <= self.lambda_memory_mb <= 10240, "lambdaMemoryMb must be within 128-10240"),
            (1 <= self.publish_timeout_seconds <= 900, "publishTimeoutSeconds: 1-900"),
            (1 <= self.publish_concurrency <= 1000, "publishConcurrency must be within 1-1000"),
        ]  # fmt: skip
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise SettingsError("; ".join(problems))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# StackSettings field -> config key in Pulumi.yaml (stage_name -> stageName, ...).
CONFIG_KEYS = {field.name: _camel(field.name) for field in fields(StackSettings)}


def load_project(path: Path = PROJECT_FILE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.safe_load(handle)


def _parse(key: str, declared_type: str, raw: Any) -> Any:
    text = str(raw).strip()
    try:
        if declared_type == "integer":
            return int(text)
        if declared_type == "number":
            return float(text)
        if declared_type == "boolean":
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError(text)
            return lowered == "true"
        return text
    except ValueError:
        raise SettingsError(f"config {key!r} must be a {declared_type}, got {raw!r}") from None


def settings_from(
    lookup: Callable[[str], Any | None], project: Mapping[str, Any] | None = None
) -> StackSettings:
    """Build settings from a lookup of config key -> raw value (None when unset).

    Unset keys take the default declared in Pulumi.yaml.
    """
    declarations = (project or load_project())["config"]
    values = {}
    for field_name, key in CONFIG_KEYS.items():
        declaration = declarations[key]
        raw = lookup(key)
        if raw is None:
            if "default" not in declaration:
                raise SettingsError(f"config {key!r} is required")
            raw = declaration["default"]
        values[field_name] = _parse(key, declaration["type"], raw)
    return StackSettings(**values)


def settings_for_stack(stack: str, root: Path = PROJECT_ROOT) -> StackSettings:
    """Settings of a stack as its `Pulumi.<stack>.yaml` holds them, without the Pulumi CLI."""
    project = load_project(root / "Pulumi.yaml")
    stack_file = root / f"Pulumi.{stack}.yaml"
    stack_config: dict[str, Any] = {}
    if stack_file.exists():
        stack_config = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    prefix = f"{project['name']}:"
    return settings_from(lambda key: stack_config.get(prefix + key), project)
