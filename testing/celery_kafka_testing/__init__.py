"""Test support for celery-kafka-partitioned, kept out of the library the way Celery keeps celery.contrib.testing
apart: a local KRaft cluster and worker processes on loopback ports (localkafka), and the load generator and task
accounting of the chaos faults (chaos). Installed in the development virtualenv only, never on nodes."""
