"""python -m bench [--quick] [--output FILE] [--profile]

Runs the four measurements of the performance benchmark (issue 5), prints the summary table
and writes it, with the details and the machine, to the output file. The benchmark measures;
it never fails on a time (the CI smoke test runs `--quick` and only checks it completes).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import cleanup, coldstart, endtoend, fanout, lookup, machine, profile, report
from bench.stack import Clients, LocalStack
from infra.settings import settings_for_stack
from local.process import ROOT

STACK = "dev"
LATENCY_MS = 20


@dataclass(frozen=True)
class Plan:
    lookup_sizes: tuple[int, ...]
    cleanup_sizes: tuple[int, ...]
    fan_sizes: tuple[int, ...]
    fan_samples: int
    users: int
    latency_samples: int
    burst: int
    hold: int
    import_repeats: int
    cost_posts: int  # posts per round of the side-by-side CPU per post (ours vs the SDK's)
    cost_rounds: int


FULL = Plan(
    lookup_sizes=(1_000, 10_000, 100_000),
    cleanup_sizes=(1_000, 10_000),
    fan_sizes=(1, 10, 100, 1_000, 5_000),
    fan_samples=3,
    users=1_000,
    latency_samples=100,
    burst=500,
    hold=10_000,
    import_repeats=5,
    cost_posts=200,
    cost_rounds=7,
)
QUICK = Plan(
    lookup_sizes=(1_000, 10_000),
    cleanup_sizes=(100,),
    fan_sizes=(1, 10, 100),
    fan_samples=2,
    users=50,
    latency_samples=20,
    burst=100,
    hold=0,
    import_repeats=1,
    cost_posts=50,
    cost_rounds=2,
)


def _phase(results: report.Results, name: str, started: float) -> None:
    results.seconds[name] = time.perf_counter() - started
    print(f"  {name}: {results.seconds[name]:.0f} s", file=sys.stderr, flush=True)


def run(plan: Plan, results: report.Results, profiling: bool) -> None:
    started = time.perf_counter()
    results.coldstart = coldstart.measure(plan.import_repeats)
    _phase(results, "cold start", started)

    started = time.perf_counter()
    results.lookup = lookup.measure(plan.lookup_sizes)
    _phase(results, "lookup", started)

    started = time.perf_counter()
    results.cleanup = cleanup.measure(plan.cleanup_sizes)
    _phase(results, "clean-up", started)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as state:
        stack = LocalStack(Path(state), "--stack", STACK)
        clients = Clients()
        try:
            _on_stack(stack, clients, plan, results, profiling)
        finally:
            # Killed, not stopped: a clean stop runs $disconnect for every held connection,
            # which takes minutes at 10,000 and measures nothing.
            stack.process.kill()
            stack.stop()
            clients.close()
    _phase(results, "local stack", started)


def _on_stack(
    stack: LocalStack, clients: Clients, plan: Plan, results: report.Results, profiling: bool
) -> None:
    rss_empty = stack.rss_bytes()
    opened = endtoend.open_users(stack, clients, 0, plan.users)
    time.sleep(1)  # $connect writes settle
    results.memory.append(
        endtoend.Memory(plan.users, clients.failed_connects, opened, rss_empty, stack.rss_bytes())
    )
    print(f"  {plan.users} clients connected in {opened:.0f} s", file=sys.stderr, flush=True)

    recorder = profile.Recorder(stack.process.pid) if profiling else None
    results.endtoend = endtoend.measure(
        stack, clients, plan.users, plan.latency_samples, plan.burst
    )
    if recorder is not None:
        results.profiles["single-user messages (latency and burst): stack process"] = (
            recorder.stop()
        )
    print("  end to end done", file=sys.stderr, flush=True)

    fans_opened = fanout.open_fans(stack, clients, plan.fan_sizes)
    print(
        f"  {sum(plan.fan_sizes)} fan-out connections in {fans_opened:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    results.fanout = fanout.measure(
        stack,
        clients,
        plan.fan_sizes,
        latency_ms=LATENCY_MS,
        concurrency=results.concurrency,
        samples=plan.fan_samples,
        profiles=results.profiles if profiling else None,
    )
    many = max(k for k in plan.fan_sizes if k <= 1000)
    assert results.endtoend is not None
    results.endtoend.bursts.append(
        endtoend.burst_to_many(stack, clients, fanout.fan_user(many), many, messages=3)
    )
    results.post_cost = fanout.post_cost(
        stack, fanout.fan_user(many), plan.cost_posts, plan.cost_rounds
    )
    largest = results.fanout[-1]
    results.handler_cpu_ms_per_post = largest.cpu_seconds * 1000 / largest.connections

    if plan.hold:
        held = clients.count
        before = stack.rss_bytes()
        failed_before = clients.failed_connects
        more = max(0, plan.hold - held)
        opened = endtoend.open_users(stack, clients, plan.users, plan.users + more)
        time.sleep(2)
        total = clients.count
        failed = clients.failed_connects - failed_before
        results.memory.append(
            endtoend.Memory(total + failed, failed, opened, rss_empty, stack.rss_bytes())
        )
        results.notes.append(
            f"Holding {total:,} connections: the last {more:,} opened in {opened:.0f} s "
            f"({more / max(opened, 1e-9):,.0f}/s through the authorizer and $connect), "
            f"{failed} failed; the stack grew by {(stack.rss_bytes() - before) / 2**20:,.0f} "
            "MiB for them."
        )
        results.held_latency_ms = _held_latency(stack, clients, plan.users + more)


def _held_latency(stack: LocalStack, clients: Clients, users: int) -> float:
    sns = stack.client("sns")
    samples = []
    for index in range(0, users, max(1, users // 20)):
        started = time.perf_counter()
        message_id = fanout.publish_to(stack, sns, endtoend.e2e_user(index), '"held"')
        arrivals = clients.wait_for(message_id, 1, timeout=30)
        if arrivals:
            samples.append((arrivals[0] - started) * 1000)
    return endtoend.percentile(samples, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the report (default: docs/PERFORMANCE.md for a full run; a quick "
        "run only prints its table unless given a file, so it never replaces the full report)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the stack and the publish handler with py-spy (pip install py-spy)",
    )
    args = parser.parse_args(argv)
    if args.profile and not profile.available():
        parser.error("--profile needs py-spy (pip install py-spy)")

    settings = settings_for_stack(STACK)
    concurrency = int(os.environ.get("PUBLISH_CONCURRENCY", settings.publish_concurrency))
    results = report.Results(
        quick=args.quick,
        machine=machine.describe(),
        concurrency=concurrency,
        publish_timeout_seconds=settings.publish_timeout_seconds,
        lambda_memory_mb=settings.lambda_memory_mb,
    )
    print("running the benchmark" + (" (quick)" if args.quick else ""), file=sys.stderr)
    run(QUICK if args.quick else FULL, results, args.profile)
    results.load_at_end = machine.load_average()

    command = "python -m bench" + (" --quick" if args.quick else "")
    if args.profile:
        command += " --profile"
    print(report.table(report.summary(results)))
    if args.output is None:
        if args.quick:
            return 0
        args.output = ROOT / "docs" / "PERFORMANCE.md"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.markdown(results, command))
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"\nwritten to {shlex.quote(str(shown))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
