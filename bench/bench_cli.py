"""How soon the command line answers: ``phs --help``, ``phs search --help``, ``phs eval --help``, ``phs models``
and ``phs index --status`` (a folder with no index), each run 5 times in a fresh process.

Times are wall-clock around ``subprocess.run`` of the ``phs`` console script (Python start-up and imports
included); the best and the median of the runs are printed. The goal: well under 0.5 s, because parsing imports
no torch, timm or FAISS.

    python bench/bench_cli.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 5


def main() -> int:
    phs = shutil.which("phs")
    if phs is None:
        print("bench_cli: the `phs` command is not on PATH (activate the virtual environment).", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as empty:
        commands = [["--help"], ["search", "--help"], ["eval", "--help"], ["models"], ["index", "--status", empty]]
        for cmd in commands:
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                subprocess.run([phs, *cmd], capture_output=True, check=False)
                times.append(time.perf_counter() - t0)
            print(f"phs {' '.join(cmd[:2]) if cmd[0] != 'index' else 'index --status'}: best of {RUNS} "
                  f"{min(times):.3f} s, median {statistics.median(times):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
