"""The class archive of Kafka's tools (module_utils/kafka_cli.run_java_tool), with a real JVM and the jars of the
Kafka release `make artifacts` assembles. Only AnsibleModule is stood in for: its run_command runs the real command."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from kafka_cli import TOPIC_COMMAND, class_archive_path, run_java_tool

REPO = Path(__file__).resolve().parents[1]


class Module:
    """The part of AnsibleModule that run_java_tool uses; remembers each command it ran."""

    def __init__(self, kafka_home: Path, check_mode: bool = False) -> None:
        self.params = {"java": shutil.which("java") or "java", "kafka_home": str(kafka_home)}
        self.check_mode = check_mode
        self.commands: list[list[str]] = []

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        self.commands.append(argv)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archives = sorted((REPO / ".cache" / "artifacts").glob("kafka_2.13-*.tgz"))
    if shutil.which("java") is None or not archives:
        pytest.skip("needs java and a Kafka archive (make artifacts)")
    home = tmp_path_factory.mktemp("kafka")
    with tarfile.open(archives[-1]) as archive:
        jars = [member for member in archive.getmembers() if "/libs/" in member.name and member.name.endswith(".jar")]
        for member in jars:
            member.name = "libs/" + Path(member.name).name
        archive.extractall(home, members=jars, filter="data")
    return home


@pytest.fixture
def home(release: Path, tmp_path: Path) -> Path:
    """A release directory of this test's own (the archive lives in it), sharing the extracted jars."""
    (tmp_path / "libs").symlink_to(release / "libs")
    return tmp_path


def version(module: Module) -> str:
    rc, out, err = run_java_tool(module, TOPIC_COMMAND, ["--version"])
    assert rc == 0, err
    return out.strip()


def loads(home: Path, archive: Path) -> bool:
    """Whether the JVM maps the archive (-Xshare:on refuses to start otherwise)."""
    argv = [shutil.which("java") or "java", "-Xshare:on", f"-XX:SharedArchiveFile={archive}", "-cp", f"{home}/libs/*", "-version"]
    # Run in the release directory: a JVM that crashes on a damaged archive leaves its report in its working directory.
    return subprocess.run(argv, capture_output=True, check=False, cwd=home).returncode == 0


def test_the_first_run_writes_the_archive_and_later_runs_use_it(home: Path) -> None:
    module = Module(home)
    archive = class_archive_path(module.params["java"], str(home))
    assert not archive.exists()

    first = version(module)
    assert archive.exists() and loads(home, archive)
    assert any(arg.startswith("-XX:ArchiveClassesAtExit=") for arg in module.commands[0])

    module.commands.clear()
    assert version(module) == first
    # One JVM: the tool itself, started from the archive (no second try, no new archive written).
    assert len(module.commands) == 1 and f"-XX:SharedArchiveFile={archive}" in module.commands[0]
    # Nothing but the archive beside the jars: no candidate left behind.
    assert sorted(path.name for path in home.iterdir()) == sorted(["libs", archive.name])


def test_check_mode_writes_no_archive(home: Path) -> None:
    module = Module(home, check_mode=True)
    assert version(module) != ""
    assert sorted(path.name for path in home.iterdir()) == ["libs"]


def test_a_damaged_archive_is_replaced_and_the_tool_still_answers(home: Path) -> None:
    module = Module(home)
    archive = class_archive_path(module.params["java"], str(home))
    expected = version(module)
    with archive.open("r+b") as damaged:
        damaged.truncate(archive.stat().st_size // 3)
    assert not loads(home, archive), "a truncated archive should not load; the test would prove nothing"

    reports = Path(tempfile.gettempdir())
    before = set(reports.glob("kafka-tool-hs_err_pid*.log"))
    assert version(module) == expected
    assert loads(home, archive), "the damaged archive was not replaced by a good one"
    crash_reports = set(reports.glob("kafka-tool-hs_err_pid*.log")) - before
    assert crash_reports, "the JVM did not crash on the damaged archive (or its report went elsewhere)"
    for report in crash_reports:
        report.unlink()
