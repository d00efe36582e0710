"""Run every benchmark in turn (``make bench``) and print their Markdown reports.

Run on an otherwise idle machine: the scripts time multi-threaded kernels, and other jobs on the
same cores distort them by large factors. Takes about 15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ["bench_threads.py"],
    ["bench_matching.py"],
    ["accuracy_matching.py"],
    ["bench_acquisition.py"],
    ["bench_cohort.py"],
    ["bench_networks.py"],
    ["bench_write_safety.py"],
]


def main() -> int:
    failed = 0
    for args in SCRIPTS:
        print(f"\n<!-- {' '.join(args)} -->\n", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / args[0]), *args[1:]]) != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
