# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Options every module that runs Kafka's Java admin tools takes (library/kafka_*.py; their argument spec is
module_utils/kafka_cli.py's ADMIN_TOOL_OPTIONS)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  command_config:
    description: Client properties file for the brokers' secured listener (passed as --command-config).
    type: path
  java:
    description: Java executable.
    type: path
    default: /usr/bin/java
attributes:
  check_mode:
    support: full
    description: In check mode it reports what it would change and changes nothing.
"""

    # The Kafka release the tools come from, for the modules that always need it.
    KAFKA_HOME = r"""
options:
  kafka_home:
    description: Kafka release directory (contains libs/).
    type: path
    required: true
"""
