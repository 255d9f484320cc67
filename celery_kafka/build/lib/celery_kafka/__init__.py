"""Celery on Kafka with one worker node per partition: transport, settings, dead letters, metrics."""

__version__ = "0.1.0"
