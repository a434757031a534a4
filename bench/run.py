"""`make bench`: measure this project against hand-run baselines on the local Docker.

Writes docs/benchmarks.md and bench/results.json; Pulumi's own output goes to a
log file in the temp directory (its path is printed). Takes about 15 minutes.
Every Docker object it makes carries the run's prefix (`bench<hex>`) or is a
`TestStack`'s, and is removed at the end, also after a failure or SIGTERM.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.suite import main  # needs the project root on the path

    sys.exit(main())
