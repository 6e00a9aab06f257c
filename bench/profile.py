"""Where the local stack's CPU goes: py-spy sampling the stack process while a phase runs.

Optional (`python -m bench --profile`, needs `pip install py-spy`; not a requirement). py-spy
samples from outside the process (`--gil`: only the thread holding the GIL, i.e. Python code
actually running, `--nonblocking`: the stack is not paused), so the timed figures of the same
run are barely disturbed. The raw (collapsed) stacks are summed into shares of samples per
function (self: the sample's innermost frame of ours, botocore's, moto's, ...; inclusive: the
function is anywhere on the stack) and per area (the package the innermost frame belongs to).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

AREAS = (
    ("functions/", "our handlers (functions/)"),
    ("local/", "local stack (local/)"),
    ("botocore/", "botocore (client side of every AWS call)"),
    ("boto3/", "botocore (client side of every AWS call)"),
    ("urllib3/", "urllib3 / http.client (HTTP client)"),
    ("http/client", "urllib3 / http.client (HTTP client)"),
    ("moto/", "moto (the emulator)"),
    ("werkzeug", "werkzeug / flask (the emulator's HTTP server)"),
    ("flask/", "werkzeug / flask (the emulator's HTTP server)"),
    ("aiohttp/", "aiohttp (the gateway)"),
    ("yarl/", "aiohttp (the gateway)"),
    ("multidict/", "aiohttp (the gateway)"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
    ("copy.py", "copy.deepcopy (moto)"),
    ("concurrent/", "threads / locks"),
    ("threading.py", "threads / locks"),
    ("queue.py", "threads / locks"),
    ("socket", "sockets"),
    ("ssl.py", "sockets"),
    ("selectors.py", "sockets"),
    ("logging/", "logging"),
)


@dataclass
class Profile:
    samples: int = 0
    areas: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    innermost: Counter[str] = field(default_factory=Counter)

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, count / max(self.samples, 1)) for name, count in counter.most_common(n)]


def available() -> bool:
    return shutil.which("py-spy") is not None or _venv_py_spy().exists()


def _venv_py_spy() -> Path:
    import sys

    return Path(sys.executable).parent / "py-spy"


class Recorder:
    """py-spy attached to a process until `stop()`; the samples are read then."""

    def __init__(self, pid: int, rate: int = 200) -> None:
        executable = str(_venv_py_spy()) if _venv_py_spy().exists() else "py-spy"
        self._output = Path(tempfile.mkdtemp(prefix="bench-py-spy-")) / "stacks.txt"
        self._process = subprocess.Popen(
            [
                *(executable, "record", "--pid", str(pid), "--format", "raw", "--gil"),
                *("--nonblocking", "--rate", str(rate), "--output", str(self._output)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pause(self) -> None:
        """Stop sampling for a while (py-spy itself is stopped; the target never is)."""
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> Profile:
        self.resume()
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if not self._output.exists():
            return Profile()
        return summarize(self._output.read_text())


def _area(frame: str) -> str:
    for marker, area in AREAS:
        if marker in frame:
            return area
    return "other"


def _name(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/file.py:line)"; keep function and file.
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{function} ({path})"


def summarize(raw: str) -> Profile:
    profile = Profile()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames:
            continue
        profile.samples += count
        profile.areas[_area(frames[-1])] += count
        profile.innermost[_name(frames[-1])] += count
        for name in dict.fromkeys(_name(frame) for frame in frames):
            profile.inclusive[name] += count
    return profile
