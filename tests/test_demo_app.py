"""The example application registers its fault tasks (demo_app.faults) only when asked to: `make demo` deploys it
without them, the tests with DEMO_APP_FAULT_TASKS=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

LIST_TASKS = (
    "import json; from demo_app.celery import app; app.loader.import_default_modules();"
    " print(json.dumps(sorted(name for name in app.tasks if name.startswith('demo_app.'))))"
)


def registered(**env: str) -> list[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DEMO_APP_FAULT_TASKS"} | env
    run = subprocess.run([sys.executable, "-c", LIST_TASKS], env=environment, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_demo_registers_no_task_that_breaks_a_worker() -> None:
    assert registered() == ["demo_app.tasks.export", "demo_app.tasks.flaky", "demo_app.tasks.record", "demo_app.tasks.tick"]


def test_the_fault_tasks_are_there_when_the_tests_ask_for_them() -> None:
    faults = {"demo_app.faults.always_fails", "demo_app.faults.crash", "demo_app.faults.memory_hog"}
    assert faults <= set(registered(DEMO_APP_FAULT_TASKS="1"))
