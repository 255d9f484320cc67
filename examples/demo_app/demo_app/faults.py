"""Tasks that break things on purpose, for the tests' faults. A worker registers them only when its environment has
DEMO_APP_FAULT_TASKS=1 (the Molecule scenarios and the package's integration tests set it; `make demo` does not), so
nobody who can publish to a queue of the demo can stop a worker with them.

- always_fails: fails every time (ends in the dead-letter topic after its retries);
- memory_hog: allocates more memory than the node's limit (the kernel kills the worker; the redelivery limit puts
  the message in the dead-letter topic);
- crash: kills the worker process outright, like the OOM killer, without needing a memory limit (local tests).
"""

from __future__ import annotations

import os
import time
from typing import Any

from demo_app.celery import app


@app.task(bind=True, autoretry_for=(RuntimeError,), max_retries=2, default_retry_delay=0)
def always_fails(self: Any, key: str, run_id: str = "") -> None:
    raise RuntimeError(f"always fails (key {key}, retry {self.request.retries})")


@app.task(bind=True)
def memory_hog(self: Any, megabytes: int, run_id: str = "") -> None:
    chunk = 1024 * 1024
    hog = []
    for _ in range(megabytes):
        block = bytearray(chunk)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is really resident
        hog.append(block)
    time.sleep(5)


@app.task(bind=True)
def crash(self: Any, run_id: str = "") -> None:
    """Kill the worker process mid-task, as the kernel's OOM killer does (the local stand-in for memory_hog)."""
    os.kill(os.getpid(), 9)
