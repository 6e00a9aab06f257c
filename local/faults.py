"""Faults the local gateway can inject, so tests can reach the paths production rarely takes.

Each field is one `python -m local up` flag (`drop_disconnect` -> `--drop-disconnect`); adding a
field adds the flag, so later faults (429/500 injection, throttling, ...) extend this class only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Faults:
    drop_disconnect: bool = field(
        default=False,
        metadata={
            "help": "do not run $disconnect when a client goes away (as when API Gateway's "
            "best-effort $disconnect is lost); the next publish then meets 410 Gone"
        },
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("fault injection")
        for spec in fields(Faults):
            flag = "--" + spec.name.replace("_", "-")
            if spec.type in (bool, "bool"):
                group.add_argument(flag, action="store_true", help=spec.metadata.get("help"))
            else:  # pragma: no cover - no non-boolean fault yet
                raise TypeError(f"add CLI support for fault {spec.name} of type {spec.type}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Faults:
        return cls(**{spec.name: getattr(args, spec.name) for spec in fields(cls)})

    def describe(self) -> str:
        active = [spec.name for spec in fields(self) if getattr(self, spec.name)]
        return ", ".join(active) if active else "none"
