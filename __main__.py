"""Pulumi entry point: `pulumi up` runs this file (see infra/stack.py for the stack)."""

from infra.stack import main

main()
