"""4. Cold start: import time of each handler module against `import boto3` alone, and the
zipped size of the Lambda package.

Each measurement is a fresh interpreter that imports boto3, then the handler module, timing
each import with `time.perf_counter()` (interpreter start-up left out); repeated, medians taken.
The module is imported from a copy of the package's files with no bytecode cache, as Lambda
runs it (the source is compiled at every cold start); boto3 is the installed one, compiled,
as the Lambda runtime's is.
The ratio is (boto3 + what the module added) / boto3. The package is the archive Pulumi ships:
`infra.functions.code_files()` (asked in a subprocess, since `infra` imports Pulumi), zipped
in memory with deflate as Lambda zip uploads are.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from functions import contract
from local.process import ROOT

# boto3 first, then the handler module, in one fresh interpreter: what the module adds to
# boto3's import is timed on its own, so the machine's noise in boto3's import cancels out.
TIMER = (
    "import time; t0 = time.perf_counter(); import boto3; t1 = time.perf_counter(); "
    "import {module}; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
)
NEEDS_BOTO3 = "import sys, {module}; print('boto3' in sys.modules)"


@dataclass(frozen=True)
class ImportRow:
    module: str
    needs_boto3: bool
    boto3_ms: float  # median of `import boto3` in the same interpreters
    added_ms: float  # median time the module's import added after boto3's

    @property
    def ratio(self) -> float:
        return (self.boto3_ms + self.added_ms) / self.boto3_ms


@dataclass(frozen=True)
class ColdStart:
    imports: list[ImportRow]
    package_bytes: int
    package_files: int
    source_bytes: int


def _run(script: str, cwd: Path = ROOT) -> str:
    # No bytecode written or read for the package: Lambda runs the archive's source from a
    # read-only directory, so every cold start compiles it.
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _package_files() -> dict[str, Path]:
    """Archive name -> file, as the Pulumi program packages the functions."""
    listing = _run(
        "import json; from infra.functions import code_files; "
        "print(json.dumps({k: str(v) for k, v in code_files().items()}))"
    )
    return {name: Path(path) for name, path in json.loads(listing.splitlines()[-1]).items()}


def _zipped(files: dict[str, Path]) -> tuple[int, int, int]:
    buffer = io.BytesIO()
    source = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files.items()):
            data = path.read_bytes()
            source += len(data)
            archive.writestr(name, data)
    return len(buffer.getvalue()), len(files), source


def measure(repeats: int) -> ColdStart:
    modules = [f"functions.{handler}" for handler in contract.HANDLERS]
    files = _package_files()
    timings: dict[str, list[tuple[float, float]]] = {module: [] for module in modules}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-package-") as extracted:
        # The package as Lambda unpacks it: its files only, no bytecode cache beside them.
        task = Path(extracted)
        for name, path in files.items():
            (task / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, task / name)
        for _ in range(repeats):
            for module in modules:
                boto3_s, added_s = map(float, _run(TIMER.format(module=module), task).split())
                timings[module].append((boto3_s * 1000, added_s * 1000))
        for module in modules:
            needs = _run(NEEDS_BOTO3.format(module=module), task) == "True"
            rows.append(
                ImportRow(
                    module,
                    needs_boto3=needs,
                    boto3_ms=statistics.median(b for b, _ in timings[module]),
                    added_ms=statistics.median(a for _, a in timings[module]),
                )
            )
    size, count, source = _zipped(files)
    return ColdStart(rows, size, count, source)
