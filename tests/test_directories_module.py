"""library/directories.py run by Ansible on this machine: creates, corrects, reports, and leaves a file alone."""

from __future__ import annotations

import grp
from pathlib import Path

from ansible_run import run_module as run_ansible_module

GROUP = grp.getgrgid(1).gr_name  # a group other than root's own (daemon on Debian)


def run_module(args: dict, *options: str) -> dict:
    return run_ansible_module("directories", args, *options)


def attributes(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_gid, stat.st_mode & 0o7777


def test_creates_missing_directories_and_parents_then_changes_nothing(tmp_path: Path) -> None:
    paths = [tmp_path / "home" / "wheels", tmp_path / "conf"]
    args = {"paths": [str(p) for p in paths], "owner": "root", "group": GROUP, "mode": "0750"}

    first = run_module(args)

    assert first["changed"] is True
    assert first["changed_paths"] == [str(p) for p in paths]
    for path in [*paths, tmp_path / "home"]:
        assert attributes(path) == (1, 0o750), path
    second = run_module(args)
    assert second["changed"] is False
    assert second["changed_paths"] == []


def test_corrects_a_drifted_mode_and_check_mode_only_reports_it(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir(mode=0o700)
    args = {"paths": [str(target)], "owner": "root", "group": GROUP, "mode": "0750"}

    checked = run_module(args, "--check")

    assert checked["changed"] is True
    assert attributes(target) == (0, 0o700)
    corrected = run_module(args)
    assert corrected["changed"] is True
    assert attributes(target) == (1, 0o750)


def test_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")

    result = run_module({"paths": [str(tmp_path / "taken")]})

    assert result.get("failed") is True
    assert "exists and is not a directory" in result["msg"]


def test_a_path_may_set_its_own_owner_group_and_mode(tmp_path: Path) -> None:
    install, data = tmp_path / "opt", tmp_path / "var" / "data"
    args = {"paths": [str(install), {"path": str(data), "group": GROUP, "mode": "0750"}], "owner": "root", "group": "root", "mode": "0755"}

    first = run_module(args)

    assert first["changed_paths"] == [str(install), str(data)]
    assert attributes(install) == (0, 0o755)
    assert attributes(data) == (1, 0o750)
    assert attributes(data.parent) == (1, 0o750)  # a parent created for it gets its attributes
    assert run_module(args)["changed"] is False


def test_a_bad_item_is_refused_before_any_directory_is_made(tmp_path: Path) -> None:
    first = tmp_path / "first"

    result = run_module({"paths": [str(first), {"path": str(tmp_path / "second"), "onwer": "root"}]})

    assert result.get("failed") is True
    assert "unknown keys ['onwer']" in result["msg"]
    assert not first.exists()
