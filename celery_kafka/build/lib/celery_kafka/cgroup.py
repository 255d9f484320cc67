"""The memory use and limit of this process's cgroup (the systemd unit's MemoryMax), on cgroup v1 and v2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 reports "no limit" as a huge page-aligned number; anything this large means unlimited.
UNLIMITED_V1 = 1 << 60


@dataclass(frozen=True)
class MemoryReading:
    usage_bytes: int | None
    limit_bytes: int | None  # None: no limit
    path: Path | None


def own_memory_cgroup(proc_cgroup: str, root: Path = Path("/sys/fs/cgroup")) -> tuple[Path, int] | None:
    """(directory, version) of the memory cgroup named in /proc/self/cgroup text, or None."""
    v2_path = None
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return root / "memory" / path.lstrip("/"), 1
        if hierarchy == "0" and controllers == "":
            v2_path = path
    if v2_path is not None:
        unified = root / "unified" if (root / "unified").is_dir() else root
        return unified / v2_path.lstrip("/"), 2
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    return int(text)


def read_memory(proc_cgroup_path: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> MemoryReading:
    try:
        found = own_memory_cgroup(proc_cgroup_path.read_text(), root)
    except OSError:
        found = None
    if found is None:
        return MemoryReading(None, None, None)
    directory, version = found
    if version == 1:
        limit = _read_int(directory / "memory.limit_in_bytes")
        return MemoryReading(
            _read_int(directory / "memory.usage_in_bytes"), None if limit is None or limit >= UNLIMITED_V1 else limit, directory
        )
    return MemoryReading(_read_int(directory / "memory.current"), _read_int(directory / "memory.max"), directory)
