"""`celery beat` that sends its periodic tasks keyed, like any other task: `celery -A app beat -S
celery_kafka.beat:KeyedScheduler`. An entry's key is its own `partition_key` header if the schedule gives one
(`options={"headers": {"partition_key": ...}}`), else the entry's name, so every run of one periodic task goes to the
same partition and runs in the order sent."""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

from celery_kafka.envelope import PARTITION_KEY_HEADER


def keyed_options(entry: ScheduleEntry) -> dict[str, Any]:
    """The entry's send options with its partition key filled in."""
    options = dict(entry.options or {})
    options["headers"] = {PARTITION_KEY_HEADER: entry.name, **(options.get("headers") or {})}
    return options


class KeyedScheduler(PersistentScheduler):
    """The default scheduler (schedule state in a local file), sending every entry with a partition key."""

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        entry.options = keyed_options(entry)
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
