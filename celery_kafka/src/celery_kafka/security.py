"""How every Kafka client of this package authenticates: one set of CELERY_KAFKA_* variables, one librdkafka dict.

The worker's transport, the dead-letter CLI and the lag exporter all build their clients from `KafkaSecurity`, so a
node configured for SASL_SSL cannot have one client quietly falling back to plaintext. Passwords come from the
environment only (a systemd EnvironmentFile on the nodes), never from a command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityConfigError(ValueError):
    """The CELERY_KAFKA_* security settings cannot work together; the message names the variable to fix."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    # Never shown in a repr, a log line or a traceback's locals.
    sasl_password: str = field(default="", repr=False)
    ssl_ca_location: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError(f"CELERY_KAFKA_SECURITY_PROTOCOL is {self.protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise SecurityConfigError(
                    f"CELERY_KAFKA_SASL_MECHANISM is {self.sasl_mechanism!r}; expected one of {', '.join(SASL_MECHANISMS)}"
                )
            missing = [name for name, value in (("USERNAME", self.sasl_username), ("PASSWORD", self.sasl_password)) if not value]
            if missing:
                names = " and ".join(f"CELERY_KAFKA_SASL_{name}" for name in missing)
                raise SecurityConfigError(f"CELERY_KAFKA_SECURITY_PROTOCOL={self.protocol} needs {names} (set in the environment)")
        if self.ssl_ca_location and self.uses_tls and not Path(self.ssl_ca_location).is_file():
            raise SecurityConfigError(f"CELERY_KAFKA_SSL_CA_LOCATION {self.ssl_ca_location} is not a readable file")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if environ is None else environ
        return cls(
            protocol=env.get("CELERY_KAFKA_SECURITY_PROTOCOL", "").strip().upper() or cls.protocol,
            sasl_mechanism=env.get("CELERY_KAFKA_SASL_MECHANISM", "").strip().upper() or cls.sasl_mechanism,
            sasl_username=env.get("CELERY_KAFKA_SASL_USERNAME", ""),
            sasl_password=env.get("CELERY_KAFKA_SASL_PASSWORD", ""),
            ssl_ca_location=env.get("CELERY_KAFKA_SSL_CA_LOCATION", "").strip(),
        )

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for every producer, consumer and admin client (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config = {"security.protocol": self.protocol}
        if self.uses_sasl:
            config.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username, "sasl.password": self.sasl_password})
        if self.uses_tls and self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config
