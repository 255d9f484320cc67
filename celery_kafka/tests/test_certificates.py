"""The pure parts of the broker certificate probe (the probe itself runs against a real TLS broker in
integration/test_secure.py)."""

from __future__ import annotations

import calendar

from prometheus_client.core import GaugeMetricFamily

from celery_kafka.certificates import CertificateCollector, not_after_seconds, split_broker


def test_broker_addresses():
    assert split_broker("kafka1:9092") == ("kafka1", 9092)
    assert split_broker(" [::1]:9093") == ("::1", 9093)


def test_not_after_as_getpeercert_gives_it():
    assert not_after_seconds({"notAfter": "Mar  5 12:00:00 2029 GMT"}) == calendar.timegm((2029, 3, 5, 12, 0, 0))


def test_a_broker_whose_handshake_fails_has_no_expiry_and_a_failed_probe():
    def probe(broker: str, ca_file: str, timeout: float) -> float:
        if broker == "down:9092":
            raise ConnectionRefusedError("refused")
        return 1e9

    families: dict[str, GaugeMetricFamily] = {f.name: f for f in CertificateCollector(["up:9092", "down:9092"], "", probe=probe).collect()}
    assert [(s.labels["broker"], s.value) for s in families["kafka_broker_certificate_probe_success"].samples] == [
        ("up:9092", 1),
        ("down:9092", 0),
    ]
    assert [(s.labels["broker"], s.value) for s in families["kafka_broker_certificate_expiry_timestamp_seconds"].samples] == [
        ("up:9092", 1e9)
    ]
