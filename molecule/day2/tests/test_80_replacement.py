"""A Kafka host lost with its disk, under a keyed load. A broker comes back by running the playbook again with the same
node id: it is formatted with the cluster's id, re-replicates, and the in-sync replicas return to 3 with nothing
lost. A KRaft controller is refused, with the safe procedure in the message and nothing formatted: under the static
quorum an empty voter can cost committed metadata (KAFKA-14077). Runs where controllers are dedicated
(the day2 scenario), so the lost broker is not also a voter.
"""

from __future__ import annotations

import time

import pytest

from verify_support import KeyedLoad, host, inventory, output, run_playbook, wait_full_isr

TOPOLOGY = inventory()
DATA = "/var/lib/kafka/data"

pytestmark = pytest.mark.skipif(not TOPOLOGY.dedicated, reason="needs a broker that is not also a KRaft controller")


def test_a_broker_lost_with_its_disk_comes_back_with_the_playbook_and_re_replicates_under_load():
    lost = TOPOLOGY.brokers[-1]
    node = host(lost)
    cluster_id = node.run(f"grep ^cluster.id= {DATA}/meta.properties").stdout.strip()
    with KeyedLoad("replacement.load") as load:
        time.sleep(5)
        node.run_expect([0], f"systemctl stop kafka && rm -rf {DATA} && mkdir -p {DATA}")
        time.sleep(5)
        started = time.monotonic()
        run = run_playbook("playbooks/kafka.yml")
        assert run.returncode == 0, output(run)[-4000:]
        wait_full_isr(topics=("replacement.load", "celery.tasks"))
        took = time.monotonic() - started
    assert node.run(f"grep ^cluster.id= {DATA}/meta.properties").stdout.strip() == cluster_id
    figures = load.report()
    print(f"\n{lost} lost its disk; formatted by the playbook, ISR 3 {took:.0f} s after the run began; {figures}")
    assert figures["failed"] == figures["lost"] == figures["duplicates"] == figures["keys out of order"] == 0, load.failed[:3]


def test_a_controller_lost_with_its_disk_is_refused_with_the_safe_procedure_and_nothing_formatted():
    lost = TOPOLOGY.controllers[-1]
    node = host(lost)
    node.run_expect([0], f"systemctl stop kafka && mv {DATA} {DATA}.lost && mkdir -p {DATA}")
    try:
        run = run_playbook("playbooks/kafka.yml")
        assert run.returncode != 0, "a controller without its metadata log was formatted"
        assert f"{lost}: KRaft controller(s) without a metadata log" in output(run), output(run)[-3000:]
        assert "Nothing was formatted" in output(run)
        assert not node.file(f"{DATA}/meta.properties").exists
    finally:
        node.run_expect([0], f"rm -rf {DATA} && mv {DATA}.lost {DATA} && systemctl start kafka")
    wait_full_isr()
