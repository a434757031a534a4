"""Pulumi's dynamic-provider server, ended when the engine that started it is gone.

The engine starts each plugin in a process group of its own, so an engine that
is killed (kill -9, a crash, a test that kills `make up`) leaves its providers
running, orphaned, each holding the dead engine's address. Pulumi's own plugins
poll the engine's gRPC health service and exit when it stops answering; the
Python SDK's dynamic provider does not, so this runs it with that check.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import threading
import time

import grpc

CHECK_PERIOD_S = 0.5
MISSES_TO_EXIT = 2  # refused connections in a row: a busy engine answers late, a dead one refuses


def engine_address(argv: list[str]) -> str | None:
    """The engine passes its address as the first argument that is not a flag."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def watch_engine(address: str) -> None:
    channel = grpc.insecure_channel(address)
    # An empty HealthCheckRequest is zero bytes on the wire; the reply is not read.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    missed = 0
    while True:
        time.sleep(CHECK_PERIOD_S)
        try:
            check(b"", timeout=10)
            missed = 0
        except grpc.RpcError as err:
            # UNIMPLEMENTED still proves an engine is there; only a refused address counts.
            missed = missed + 1 if err.code() == grpc.StatusCode.UNAVAILABLE else 0
        if missed >= MISSES_TO_EXIT:
            with contextlib.suppress(OSError):  # the engine read our stderr: the pipe is likely gone too
                print(f"pulumi dynamic provider: the engine at {address} is gone; exiting", file=sys.stderr)
            os._exit(1)


def main() -> None:
    address = engine_address(sys.argv[1:])
    if address:
        threading.Thread(target=watch_engine, args=(address,), name="engine-watch", daemon=True).start()
    # As `python -m` would: the working directory (the program's) first on the path, so the
    # providers pickled into the program unpickle from its modules.
    sys.path[0] = os.getcwd()
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
