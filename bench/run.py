"""`make bench`: measure this project against hand-run baselines on the local Docker.

Writes docs/benchmarks.md and bench/results.json; Pulumi's own output goes to a
log file in the temp directory (its path is printed). Takes about 17 minutes (the part on hosts about 3).
Every Docker object it makes carries the run's prefix (`bench<hex>`) or is a
`TestStack`'s, and is removed at the end, also after a failure or SIGTERM.
Last, it measures the cluster on three hosts of a lab it makes (prefix `dkb`,
10.213.90.0/24, see `testing/lab.py`) against the one-engine figures; the lab
is brought down at the end too. `BENCH_ONLY=hosts` runs just that part (its
ratios then have nothing to compare with).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.suite import main  # needs the project root on the path

    sys.exit(main())
