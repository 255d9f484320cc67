"""PNG charts of what `make bench` and the chaos faults measured, for readers who would rather look than read.

matplotlib with its file-only backend (Agg): no display is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend


def fault_timeline(
    path: Path,
    title: str,
    finished_at: Sequence[float],
    lag: Sequence[tuple[float, float]],
    fault_at: float | None,
    recovered_at: float | None,
) -> Path:
    """Tasks completed per second and the workers' summed consumer lag over a fault, with the moment the fault was
    injected and the moment its check saw the system recover. Times are Unix seconds; the axis starts at the first
    completion."""
    if not finished_at:
        raise ValueError("no completions to draw")
    start = min(finished_at)
    per_second = Counter(int(t - start) for t in finished_at)
    seconds = range(max(per_second) + 1)
    figure, tasks_axis = plt.subplots(figsize=(10, 4), dpi=100)
    counts = [per_second.get(s, 0) for s in seconds]
    tasks_axis.plot(list(seconds), counts, color="tab:blue", linewidth=1, label="tasks completed per second")
    tasks_axis.set_xlabel("seconds since the first completion")
    tasks_axis.set_ylabel("tasks completed per second", color="tab:blue")
    tasks_axis.set_ylim(bottom=0)
    if lag:
        lag_axis = tasks_axis.twinx()
        lag_axis.plot([t - start for t, _ in lag], [value for _, value in lag], color="tab:orange", linewidth=1.5, label="consumer lag")
        lag_axis.set_ylabel("consumer lag (messages, all partitions)", color="tab:orange")
        lag_axis.set_ylim(bottom=0)
    for moment, label, colour in ((fault_at, "fault", "tab:red"), (recovered_at, "recovered", "tab:green")):
        if moment is not None:
            tasks_axis.axvline(moment - start, color=colour, linestyle="--", linewidth=1.2)
            tasks_axis.annotate(label, (moment - start, tasks_axis.get_ylim()[1] * 0.95), color=colour, rotation=90, ha="right", va="top")
    tasks_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def comparison(path: Path, systems: Sequence[tuple[str, float | None, float | None]], scaling: dict[int, float], title: str) -> Path:
    """Left: worker throughput and publish rate of each system, (name, tasks/s, publish/s). Right: our workers'
    total and per-worker throughput against the number of workers."""
    figure, (bars, lines) = plt.subplots(1, 2, figsize=(13, 5), dpi=100, gridspec_kw={"width_ratios": [2, 1]})
    names = [name for name, _, _ in systems]
    positions = range(len(names))
    width = 0.4
    bars.barh([p - width / 2 for p in positions], [run or 0 for _, run, _ in systems], height=width, label="worker tasks/s")
    bars.barh([p + width / 2 for p in positions], [pub or 0 for _, _, pub in systems], height=width, label="publish/s")
    bars.set_yticks(list(positions), names, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("per second")
    bars.legend(loc="best")
    counts = sorted(scaling)
    lines.plot(counts, [scaling[n] for n in counts], marker="o", label="all workers")
    lines.plot(counts, [scaling[n] / n for n in counts], marker="o", label="per worker")
    lines.set_xticks(counts)
    lines.set_xlabel("workers (one partition each)")
    lines.set_ylabel("tasks/s")
    lines.set_ylim(bottom=0)
    lines.legend()
    lines.set_title("ours: scaling")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
