# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Callback plugin: load the Jinja filter and test plugins once in ansible-playbook's main process.

ansible-core runs each task on each host in a worker process forked from the main process. The main process never
templates a filter itself, so its cache of filter and test plugins stays empty, and every worker fills its own copy:
it imports every filter and test plugin file (ansible.builtin's and this project's) the first time a template uses a
filter. Filled here, before each task's workers are forked, the cache is inherited by all of them. On the default
scenario's idempotent re-run of site.yml that was about a sixth of the controller's CPU (docs/facts.md).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: preload_jinja_plugins
type: aggregate
short_description: Load the Jinja filter and test plugins once, before the task workers are forked
description:
  - Fills the controller's cache of Jinja filter and test plugins before each task starts, so the worker processes
    forked for the task inherit it instead of importing every filter and test plugin file again.
  - Changes no result and prints nothing. A role or playbook that adds a plugin directory clears the cache; the next
    task fills it again.
requirements:
  - Enable it in ansible.cfg (callbacks_enabled = preload_jinja_plugins) with callback_plugins pointing here.
"""

from ansible.playbook.task import Task
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "preload_jinja_plugins"
    CALLBACK_NEEDS_ENABLED = True

    @staticmethod
    def _preload() -> None:
        # all() fills the loader's cache on first use and only reads it afterwards.
        for loader in (filter_loader, test_loader):
            for _plugin in loader.all():
                pass

    def v2_playbook_on_task_start(self, task: Task, is_conditional: bool) -> None:
        self._preload()

    def v2_playbook_on_handler_task_start(self, task: Task) -> None:
        self._preload()
