"""The Lambda package: one module per handler and the small modules they share.

Records here are `typing.NamedTuple`s rather than dataclasses: the package is compiled and run
at every cold start, and building a frozen dataclass costs about 1 ms of it, a NamedTuple a
sixth of that (docs/PERFORMANCE.md, cold start).
"""
