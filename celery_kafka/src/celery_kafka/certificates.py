"""When the brokers' TLS certificates expire, as the brokers serve them.

A TLS handshake with each bootstrap broker (no Kafka request, so no credentials), checked against the CA the clients
use, and the certificate's notAfter exported as kafka_broker_certificate_expiry_timestamp_seconds{broker}. Measuring
the served certificate, not a file, shows a renewal only once the broker has restarted with it. Probes run at most
once per `refresh` seconds (once a minute while one fails): expiry moves in days, and a scrape must stay cheap.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("celery_kafka_exporter.certificates")


def split_broker(broker: str) -> tuple[str, int]:
    """'kafka1:9092' -> ('kafka1', 9092); '[::1]:9092' -> ('::1', 9092)."""
    host, _, port = broker.strip().rpartition(":")
    return host.strip("[]"), int(port)


def not_after_seconds(peer_certificate: dict) -> float:
    """Epoch seconds of the notAfter of a certificate as ssl.SSLSocket.getpeercert() returns it."""
    return float(ssl.cert_time_to_seconds(peer_certificate["notAfter"]))


def served_certificate_expiry(broker: str, ca_file: str, timeout: float) -> float:
    """notAfter of the certificate `broker` serves; raises OSError (ssl.SSLError included) when the handshake fails."""
    host, port = split_broker(broker)
    context = ssl.create_default_context(cafile=ca_file or None)
    with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        return not_after_seconds(tls.getpeercert())


class CertificateCollector(Collector):
    def __init__(
        self,
        brokers: list[str],
        ca_file: str,
        timeout: float = 10.0,
        refresh: float = 300.0,
        probe: Callable[[str, str, float], float] = served_certificate_expiry,
    ) -> None:
        self.brokers = brokers
        self.ca_file = ca_file
        self.timeout = timeout
        self.refresh = refresh
        self.probe = probe
        self.lock = threading.Lock()
        self.expiry: dict[str, float | None] = {}
        self.read_at = float("-inf")

    def _read(self) -> None:
        for broker in self.brokers:
            try:
                self.expiry[broker] = self.probe(broker, self.ca_file, self.timeout)
            except (OSError, ValueError, KeyError) as error:
                logger.warning("TLS certificate of %s: %s", broker, error)
                self.expiry[broker] = None
        self.read_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            due = min(self.refresh, 60.0) if None in self.expiry.values() else self.refresh
            if time.monotonic() - self.read_at >= due:
                self._read()
            expiry = GaugeMetricFamily(
                "kafka_broker_certificate_expiry_timestamp_seconds",
                "notAfter of the TLS certificate the broker serves (Unix time)",
                labels=["broker"],
            )
            probe_ok = GaugeMetricFamily(
                "kafka_broker_certificate_probe_success", "1 if the TLS handshake with the broker worked", labels=["broker"]
            )
            for broker in self.brokers:
                seconds = self.expiry.get(broker)
                probe_ok.add_metric([broker], 0 if seconds is None else 1)
                if seconds is not None:
                    expiry.add_metric([broker], seconds)
            yield expiry
            yield probe_ok
