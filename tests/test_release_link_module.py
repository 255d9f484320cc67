"""library/release_link.py run by Ansible on this machine: switches the link, keeps the previous release, prunes."""

from __future__ import annotations

from pathlib import Path

from ansible_run import run_module


def releases(root: Path, *names: str) -> list[Path]:
    made = [root / "releases" / name for name in names]
    for directory in made:
        directory.mkdir(parents=True)
    return made


def switch(root: Path, release: Path, *options: str, **extra: object) -> dict:
    args = {"link": str(root / "venv"), "release": str(release), "releases_dir": str(root / "releases"), **extra}
    return run_module("release_link", args, *options)


def test_switches_keeps_the_previous_release_and_removes_older_ones(tmp_path: Path) -> None:
    oldest, previous, new = releases(tmp_path, "a", "b", "c")
    (tmp_path / "venv").symlink_to(previous)

    result = switch(tmp_path, new)

    assert result["changed"] is True
    assert result["previous"] == str(previous)
    assert result["removed"] == [str(oldest)]
    assert (tmp_path / "venv").readlink() == new
    assert (tmp_path / "venv.previous").readlink() == previous
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["b", "c"]
    # A re-run keeps the previous release: it is what a rollback needs.
    again = switch(tmp_path, new)
    assert again["changed"] is False
    assert again["rollback"] == str(previous)
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["b", "c"]


def test_each_switch_keeps_only_the_release_it_replaced(tmp_path: Path) -> None:
    # Each release is installed just before the switch to it, as the celery_worker role does.
    [first] = releases(tmp_path, "a")
    assert switch(tmp_path, first)["rollback"] is None
    [second] = releases(tmp_path, "b")
    assert switch(tmp_path, second)["removed"] == []
    [third] = releases(tmp_path, "c")
    assert switch(tmp_path, third)["removed"] == [str(first)]
    assert (tmp_path / "venv.previous").readlink() == second
    assert switch(tmp_path, third)["changed"] is False


def test_check_mode_reports_and_changes_nothing(tmp_path: Path) -> None:
    oldest, previous, new = releases(tmp_path, "a", "b", "c")
    (tmp_path / "venv").symlink_to(previous)

    result = switch(tmp_path, new, "--check")

    assert result["changed"] is True
    assert result["removed"] == [str(oldest)]
    assert (tmp_path / "venv").readlink() == previous
    assert oldest.is_dir()


def test_a_directory_in_place_of_the_link_is_refused_unless_replaced(tmp_path: Path) -> None:
    [release] = releases(tmp_path, "a")
    (tmp_path / "venv" / "bin").mkdir(parents=True)

    refused = switch(tmp_path, release)

    assert refused.get("failed") is True
    assert "is a directory, not a link" in refused["msg"]
    assert (tmp_path / "venv" / "bin").is_dir()
    replaced = switch(tmp_path, release, replace_directory=True)
    assert replaced["changed"] is True
    assert (tmp_path / "venv").readlink() == release


def test_a_missing_release_is_refused_before_anything_is_removed(tmp_path: Path) -> None:
    oldest, previous = releases(tmp_path, "a", "b")
    (tmp_path / "venv").symlink_to(previous)

    result = switch(tmp_path, tmp_path / "releases" / "never-installed")

    assert result.get("failed") is True
    assert "is not a directory" in result["msg"]
    assert oldest.is_dir()
    assert (tmp_path / "venv").readlink() == previous
