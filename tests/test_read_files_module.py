"""library/read_files.py run by Ansible on this machine: contents as slurp returns them, existence, no change."""

from __future__ import annotations

import base64
from pathlib import Path

from ansible_run import run_module as run_ansible_module


def run_module(args: dict, *options: str) -> dict:
    return run_ansible_module("read_files", args, *options)


def test_reads_files_and_reports_missing_ones_without_failing(tmp_path: Path) -> None:
    present = tmp_path / "server.properties"
    present.write_bytes(b"node.id=1\nlisteners=INTERNAL://:9091\n")
    missing = tmp_path / "data" / "meta.properties"

    result = run_module({"read": [str(present), str(missing)]})

    assert result["changed"] is False
    assert result["files"][str(present)]["exists"] is True
    assert base64.b64decode(result["files"][str(present)]["content"]) == present.read_bytes()
    assert result["files"][str(missing)] == {"exists": False}


def test_looks_for_files_and_directories_without_reading_them(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "agent.jar").write_bytes(b"\x00" * 10)
    paths = [str(tmp_path / "libs"), str(tmp_path / "agent.jar"), str(tmp_path / "other")]

    result = run_module({"look_for": paths}, "--check")

    assert result["files"] == {paths[0]: {"exists": True}, paths[1]: {"exists": True}, paths[2]: {"exists": False}}


def test_fails_on_a_path_it_cannot_read(tmp_path: Path) -> None:
    result = run_module({"read": [str(tmp_path)]})

    assert result.get("failed") is True
    assert result["msg"] == f"cannot read {tmp_path}: Is a directory"
