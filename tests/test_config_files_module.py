"""library/config_files.py run by Ansible on this machine: writes, leaves alone, corrects, reports, and refuses."""

from __future__ import annotations

import grp
from pathlib import Path

from ansible_run import run_module

GROUP = grp.getgrgid(1).gr_name  # a group other than root's own (daemon on Debian)


def write(files: list[dict], *options: str, **common: str) -> dict:
    return run_module("config_files", {"files": files, "owner": "root", "group": GROUP, "mode": "0640", **common}, *options)


def attributes(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_gid, stat.st_mode & 0o7777


def test_writes_each_file_with_its_attributes_then_changes_nothing(tmp_path: Path) -> None:
    config, unit = tmp_path / "server.properties", tmp_path / "kafka.service"
    files = [
        {"path": str(config), "content": "node.id=1\n"},
        {"path": str(unit), "content": "[Unit]\n", "group": "root", "mode": "0644"},
    ]

    first = write(files)

    assert first["changed"] is True
    assert first["changed_paths"] == [str(config), str(unit)]
    assert config.read_text() == "node.id=1\n"
    assert attributes(config) == (1, 0o640)
    assert attributes(unit) == (0, 0o644)
    second = write(files)
    assert second["changed"] is False
    assert second["changed_paths"] == []


def test_only_the_file_that_drifted_is_rewritten_and_check_mode_only_reports_it(tmp_path: Path) -> None:
    kept, drifted = tmp_path / "kept.conf", tmp_path / "drifted.conf"
    files = [{"path": str(kept), "content": "a=1\n"}, {"path": str(drifted), "content": "b=2\n"}]
    write(files)
    drifted.write_text("b=3\n")

    checked = write(files, "--check", "--diff")

    assert checked["changed_paths"] == [str(drifted)]
    assert checked["diff"][0]["before"] == "b=3\n" and checked["diff"][0]["after"] == "b=2\n"
    assert drifted.read_text() == "b=3\n"
    corrected = write(files)
    assert corrected["changed_paths"] == [str(drifted)]
    assert drifted.read_text() == "b=2\n"


def test_corrects_a_drifted_mode_without_rewriting(tmp_path: Path) -> None:
    target = tmp_path / "worker.env"
    files = [{"path": str(target), "content": "X=1\n"}]
    write(files)
    target.chmod(0o666)
    inode = target.stat().st_ino

    corrected = write(files)

    assert corrected["changed_paths"] == [str(target)]
    assert attributes(target) == (1, 0o640)
    assert target.stat().st_ino == inode  # a rewrite would have moved a new file in place


def test_content_that_fails_validation_never_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "prometheus.yml"
    target.write_text("good\n")

    refused = write([{"path": str(target), "content": "bad\n", "validate": "grep -q good %s"}])

    assert refused.get("failed") is True
    assert "failed the check" in refused["msg"]
    assert target.read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prometheus.yml"]  # no temporary file left behind


def test_refuses_a_directory_in_the_way_and_a_missing_parent(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()

    in_the_way = write([{"path": str(tmp_path / "taken"), "content": ""}])
    no_parent = write([{"path": str(tmp_path / "missing" / "file"), "content": ""}])

    assert "exists and is not a regular file" in in_the_way["msg"]
    assert "does not exist" in no_parent["msg"]


def test_check_mode_reports_a_file_whose_directory_an_earlier_task_would_create(tmp_path: Path) -> None:
    target = tmp_path / "not-yet" / "server.properties"

    checked = write([{"path": str(target), "content": "node.id=1\n"}], "--check")

    assert checked.get("failed") is not True
    assert checked["changed_paths"] == [str(target)]
    assert not target.parent.exists()


def test_an_absent_file_is_removed_check_mode_only_reports_it_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    kept, stale = tmp_path / "server.properties", tmp_path / "client-tls.properties"
    stale.write_text("security.protocol=SSL\n")
    files = [{"path": str(kept), "content": "node.id=1\n"}, {"path": str(stale), "state": "absent"}]

    checked = write(files, "--check")

    assert checked["changed_paths"] == [str(kept), str(stale)]
    assert stale.exists()
    removed = write(files)
    assert removed["changed_paths"] == [str(kept), str(stale)]
    assert not stale.exists()
    assert write(files)["changed"] is False


def test_a_present_file_without_content_and_a_directory_to_remove_are_refused(tmp_path: Path) -> None:
    no_content = write([{"path": str(tmp_path / "x.conf")}])
    (tmp_path / "dir").mkdir()
    directory = write([{"path": str(tmp_path / "dir"), "state": "absent"}])

    assert no_content.get("failed") is True and "content" in no_content["msg"]
    assert directory.get("failed") is True and "is a directory" in directory["msg"]
    assert (tmp_path / "dir").is_dir() and not (tmp_path / "x.conf").exists()
