"""A job script shipped on every node: prints where and when it ran."""

import datetime
import platform
import sys

print(f"hello from {platform.node()} at {datetime.datetime.now(datetime.UTC).isoformat()}")
print(f"python {sys.version.split()[0]}")
