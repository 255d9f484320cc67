"""celery-kafka-dlq: list, show, replay and skip dead letters.

Dead letters stay in the dead-letter topic (retention 7 days). Replaying or skipping one appends a resolution record
to the same topic, so the topic itself says which letters are still pending, and who did what is kept with them.
A letter is named by its place in the topic, `partition:offset` (as `list` prints it).

Replay sends the task again with its original name, arguments and partition key (so it goes to the same partition
and worker) and its retry count reset; the replay count travels in a header, and a letter that has already been
replayed --max-replays times is refused unless --force is given, so a task that keeps failing cannot loop forever.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time
from dataclasses import dataclass, field

from celery import Celery
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from celery_kafka.deadletter import DeadLetter
from celery_kafka.envelope import PARTITION_KEY_HEADER, REPLAY_COUNT_HEADER
from celery_kafka.security import SecurityConfigError
from celery_kafka.settings import WorkerEnvironment

RESOLUTION_KIND = "resolution"


@dataclass
class Entry:
    letter_id: str
    letter: DeadLetter
    resolution: dict | None = None

    @property
    def status(self) -> str:
        return "pending" if self.resolution is None else self.resolution["action"]


@dataclass
class DeadLetterTopic:
    """Everything in the dead-letter topic, read from the beginning up to its current end."""

    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def read(cls, bootstrap: str, topic: str, timeout: float = 30, client_config: dict[str, str] | None = None) -> DeadLetterTopic:
        consumer = Consumer(
            {
                **(client_config or {}),
                "bootstrap.servers": bootstrap,
                "group.id": "celery-kafka-dlq-reader",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if metadata.error is not None:
                raise SystemExit(f"cannot read {topic}: {metadata.error}")
            ends = {}
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                if high > low:
                    ends[partition] = high
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in ends])
            found = cls()
            resolutions: list[dict] = []
            deadline = time.monotonic() + timeout
            while ends and time.monotonic() < deadline:
                record = consumer.poll(1)
                if record is None or record.error():
                    continue
                partition, offset = record.partition(), record.offset()
                headers = dict(record.headers() or [])
                if headers.get("kind") == RESOLUTION_KIND.encode():
                    resolutions.append(json.loads(record.value()))
                else:
                    letter_id = f"{partition}:{offset}"
                    found.entries[letter_id] = Entry(letter_id, DeadLetter.from_json(record.value()))
                if offset + 1 >= ends[partition]:
                    del ends[partition]
            if ends:
                raise SystemExit(f"could not read {topic} to its end within {timeout} s")
            for resolution in resolutions:
                if resolution["letter"] in found.entries:
                    found.entries[resolution["letter"]].resolution = resolution
            return found
        finally:
            consumer.close()


_APPS: dict[tuple[str, str], Celery] = {}


def _app(env: WorkerEnvironment) -> Celery:
    """One Celery app (so one connection and producer) per broker list and topic, however many letters are handled."""
    from celery_kafka.app import create_app

    key = (env.broker_url, env.dead_letter_topic)
    if key not in _APPS:
        _APPS[key] = create_app(env)
    return _APPS[key]


def _resolve(env: WorkerEnvironment, entry: Entry, action: str, note: str = "") -> None:
    app = _app(env)
    resolution = {
        "letter": entry.letter_id,
        "action": action,
        "task_id": entry.letter.task_id,
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "at": time.time(),
        "note": note,
    }
    with app.connection_for_write() as connection:
        connection.default_channel.produce_durably(
            env.dead_letter_topic, json.dumps(resolution).encode(), key=entry.letter.record_key, headers={"kind": RESOLUTION_KIND}
        )


def replay(env: WorkerEnvironment, entry: Entry, max_replays: int, force: bool) -> str:
    letter = entry.letter
    if entry.resolution is not None:
        return f"{entry.letter_id}: already {entry.status}, not replayed"
    if not letter.replayable:
        return f"{entry.letter_id}: a {letter.kind} letter cannot be replayed (its message is not a runnable task); skip it"
    if letter.replays >= max_replays and not force:
        return f"{entry.letter_id}: replayed {letter.replays} times already (limit {max_replays}); use --force to replay anyway"
    app = _app(env)
    headers = {REPLAY_COUNT_HEADER: letter.replays + 1}
    if letter.partition_key is not None:
        headers[PARTITION_KEY_HEADER] = letter.partition_key
    app.send_task(letter.task_name, args=letter.args, kwargs=letter.kwargs, task_id=letter.task_id, headers=headers, retries=0)
    _resolve(env, entry, "replayed", note=f"replay {letter.replays + 1}")
    return f"{entry.letter_id}: replayed {letter.task_name}[{letter.task_id}] (key {letter.partition_key}, replay {letter.replays + 1})"


def _pick(topic: DeadLetterTopic, ids: list[str], every: bool) -> list[Entry]:
    if every:
        return [entry for entry in topic.entries.values() if entry.status == "pending"]
    missing = [letter_id for letter_id in ids if letter_id not in topic.entries]
    if missing:
        raise SystemExit(f"no dead letter {', '.join(missing)} (see `list`)")
    return [topic.entries[letter_id] for letter_id in ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="celery-kafka-dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", help="comma-separated host:port list (default: CELERY_KAFKA_BROKERS)")
    parser.add_argument("--topic", help="dead-letter topic (default: CELERY_KAFKA_DEAD_LETTER_TOPIC)")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="dead letters and their status")
    listing.add_argument("--all", action="store_true", help="include replayed and skipped letters")
    show = sub.add_parser("show", help="one dead letter in full (JSON)")
    show.add_argument("letter")
    for name, help_text in (("replay", "send the task again, to the same partition key"), ("skip", "mark as handled without replaying")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("letters", nargs="*", metavar="PARTITION:OFFSET")
        command.add_argument("--all", action="store_true", help="every pending letter")
        if name == "replay":
            command.add_argument("--max-replays", type=int, default=3)
            command.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    try:
        env = WorkerEnvironment.from_environ()
    except SecurityConfigError as error:
        parser.error(str(error))
    if args.brokers:
        env = WorkerEnvironment(**{**env.__dict__, "brokers": args.brokers.split(",")})
    if args.topic:
        env = WorkerEnvironment(**{**env.__dict__, "dead_letter_topic": args.topic})
    # The same security settings (CELERY_KAFKA_SECURITY_PROTOCOL, ...) as the workers: reading here, sending via the app.
    topic = DeadLetterTopic.read(",".join(env.brokers), env.dead_letter_topic, client_config=env.kafka_client_config())

    if args.command == "list":
        print(f"{'LETTER':<10} {'STATUS':<9} {'KIND':<17} {'TASK':<32} {'KEY':<14} {'RETRIES':>7} {'REPLAYS':>7}  REASON")
        for entry in topic.entries.values():
            if entry.status != "pending" and not args.all:
                continue
            letter = entry.letter
            print(
                f"{entry.letter_id:<10} {entry.status:<9} {letter.kind:<17} {letter.task_name or '-':<32} "
                f"{letter.partition_key or '-':<14} {letter.retries:>7} {letter.replays:>7}  {letter.reason}"
            )
        return 0
    if args.command == "show":
        if args.letter not in topic.entries:
            raise SystemExit(f"no dead letter {args.letter} (see `list`)")
        entry = topic.entries[args.letter]
        print(json.dumps({"letter": entry.letter_id, "status": entry.status, **json.loads(entry.letter.to_json())}, indent=2))
        return 0
    if not args.letters and not args.all:
        parser.error(f"{args.command}: name letters (PARTITION:OFFSET) or use --all")
    for entry in _pick(topic, args.letters, args.all):
        if args.command == "replay":
            print(replay(env, entry, args.max_replays, args.force))
        elif entry.resolution is not None:
            print(f"{entry.letter_id}: already {entry.status}")
        else:
            _resolve(env, entry, "skipped")
            print(f"{entry.letter_id}: skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
