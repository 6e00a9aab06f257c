"""The performance benchmark: `python -m bench [--quick] [--output docs/PERFORMANCE.md]`.

One module per measurement (`lookup`, `fanout`, `endtoend`, `coldstart`); `stack` starts the
local stack and holds WebSocket clients; `report` renders the table and PERFORMANCE.md.
The benchmark measures and reports; it never judges times (the CI smoke run only checks that
`--quick` completes).
"""
