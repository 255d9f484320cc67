"""The dashboards are what scripts/dashboards.py writes, refer only to the provisioned datasource, and every query
parses as PromQL (promtool, through recording rules). The Molecule scenario `monitoring` runs each query live."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "monitoring" / "dashboards"
PROMTOOL = REPO / ".cache" / "bin" / "promtool"


def generator():
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "scripts" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dashboards"] = module  # dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def committed() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def queries() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name, board in committed().items()
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    module = generator()
    assert set(module.DASHBOARDS) == set(committed()), "run: python scripts/dashboards.py"
    for name, build in module.DASHBOARDS.items():
        assert (DASHBOARDS / name).read_text() == module.render(build), f"{name} is stale: run python scripts/dashboards.py"


def test_dashboards_cover_what_operators_need() -> None:
    titles = {board["title"] for board in committed().values()}
    assert titles == {"Kafka cluster", "Celery tasks", "Consumer lag", "Worker memory", "Hosts"}
    uids = [board["uid"] for board in committed().values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_uses_the_provisioned_datasource() -> None:
    for name, board in committed().items():
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "prometheus"
                assert target["expr"].strip()


@pytest.mark.skipif(not PROMTOOL.is_file(), reason="needs .cache/bin/promtool (make deps)")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr.replace("$__rate_interval", "1m")}
        for index, (_, _, expr) in enumerate(queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
