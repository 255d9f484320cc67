"""library/system_account.py run by Ansible in a throwaway container of the base image: real groupadd, useradd, usermod."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from ansible_run import run_module

IMAGE = os.environ.get("KCS_BASE_IMAGE", "kcs/debian12-systemd:latest")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def node() -> Iterator[str]:
    """A container of the image the Molecule nodes run, which this test may change as root."""
    if shutil.which("docker") is None or subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.skip(f"needs Docker and the base image {IMAGE} (make image)")
    name = f"kcs-test-system-account-{os.getpid()}"
    docker("run", "--detach", "--rm", "--name", name, "--entrypoint", "sleep", IMAGE, "infinity")
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def passwd_entry(node: str, database: str, key: str) -> list[str]:
    """getent's fields for `key` in `database` (passwd or group), [] when there is none."""
    done = subprocess.run(["docker", "exec", node, "getent", database, key], capture_output=True, text=True, check=False)
    return done.stdout.strip().split(":") if done.returncode == 0 else []


def test_creates_a_system_group_and_user_without_a_home_and_a_rerun_changes_nothing(node: str) -> None:
    args = {"name": "kafka", "group": "kafkagrp", "home": "/var/lib/kafka"}

    result = run_module("system_account", args, container=node)

    assert result["changed"] is True
    _name, _pw, uid, gid, _gecos, home, shell = passwd_entry(node, "passwd", "kafka")
    group = passwd_entry(node, "group", "kafkagrp")
    assert group and int(group[2]) < 1000, group  # a system group
    assert int(uid) < 1000 and gid == group[2]
    assert (home, shell) == ("/var/lib/kafka", "/usr/sbin/nologin")
    assert subprocess.run(["docker", "exec", node, "test", "-e", "/var/lib/kafka"]).returncode != 0
    assert (result["uid"], result["gid"]) == (int(uid), int(gid))
    again = run_module("system_account", args, container=node)
    assert again["changed"] is False


def test_group_defaults_to_the_user_name(node: str) -> None:
    run_module("system_account", {"name": "exporter", "home": "/opt/exporter"}, container=node)

    user = passwd_entry(node, "passwd", "exporter")
    assert user[3] == passwd_entry(node, "group", "exporter")[2]


def test_corrects_the_group_home_and_shell_of_an_existing_user_and_keeps_its_uid(node: str) -> None:
    docker("exec", node, "useradd", "--system", "--shell", "/bin/bash", "--home-dir", "/home/old", "worker")
    uid = passwd_entry(node, "passwd", "worker")[2]

    result = run_module("system_account", {"name": "worker", "group": "celery", "home": "/var/lib/celery"}, "--diff", container=node)

    assert result["changed"] is True
    assert result["diff"]["before"]["shell"] == "/bin/bash"
    _name, _pw, uid_after, gid, _gecos, home, shell = passwd_entry(node, "passwd", "worker")
    assert uid_after == uid
    assert gid == passwd_entry(node, "group", "celery")[2]
    assert (home, shell) == ("/var/lib/celery", "/usr/sbin/nologin")


def test_check_mode_reports_and_changes_nothing(node: str) -> None:
    result = run_module("system_account", {"name": "grafana", "home": "/var/lib/grafana"}, "--check", container=node)

    assert result["changed"] is True
    assert passwd_entry(node, "passwd", "grafana") == []
    assert passwd_entry(node, "group", "grafana") == []
