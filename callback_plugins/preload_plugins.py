# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Callback plugin: load plugins once in ansible-playbook's main process, so the task workers inherit them.

ansible-core runs each task on each host in a worker process forked from the main process, and whatever a worker
loads dies with it. The main process never templates a filter, calls a lookup or opens a connection itself, so
without this plugin every worker loads again what it needs:
- the Jinja filter and test plugins: every filter and test plugin file (ansible.builtin's and this project's) is
  imported the first time a template uses a filter;
- each lookup plugin it calls and its connection plugin: the plugin's DOCUMENTATION is parsed as YAML to learn its
  configuration settings.
Loaded here, before the workers are forked, all of that is inherited. On the default scenario's idempotent re-run of
site.yml the filter plugins were about a sixth of the controller's CPU, the lookup and connection plugins about a
twentieth (docs/facts.md).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: preload_plugins
type: aggregate
short_description: Load the Jinja, lookup and connection plugins once, before the task workers are forked
description:
  - Fills the controller's cache of Jinja filter and test plugins before each task starts, so the worker processes
    forked for the task inherit it instead of importing every filter and test plugin file again.
  - When the first play starts, loads the lookup plugins named in O(lookups) and the default connection plugin, and
    the connection plugin a host's inventory variables name (ansible_connection, for example community.docker.docker)
    when the host's first result comes in, so that the workers inherit their configuration settings instead of parsing
    each plugin's documentation again. Only the named lookups, because loading all of them costs a short playbook
    more than it saves.
  - Changes no result and prints nothing. A role or playbook that adds a plugin directory clears the filter cache; the
    next task fills it again.
requirements:
  - Enable it in ansible.cfg (callbacks_enabled = preload_plugins) with callback_plugins pointing here.
options:
  lookups:
    description: The lookup plugins to load once, by the name the plays call them (the ones this project's roles call).
    type: list
    elements: str
    default: [ansible.builtin.env, ansible.builtin.file, ansible.builtin.fileglob, ansible.builtin.template]
    env:
      - name: ANSIBLE_PRELOAD_LOOKUPS
    ini:
      - section: callback_preload_plugins
        key: lookups
"""

from ansible import constants as C
from ansible.executor.task_result import CallbackTaskResult
from ansible.playbook.play import Play
from ansible.playbook.task import Task
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import connection_loader, filter_loader, lookup_loader, test_loader


def _load_all(*loaders) -> None:
    # all() imports each plugin file on first use and only reads its cache afterwards.
    for loader in loaders:
        for _plugin in loader.all(class_only=True):
            pass


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "preload_plugins"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._hosts_seen: set[str] = set()
        self._settings_loaded = False

    def v2_playbook_on_play_start(self, play: Play) -> None:
        if self._settings_loaded:
            return
        self._settings_loaded = True
        # get() files a plugin's settings under the name it is asked for, which is the name the workers look up.
        for name in self.get_option("lookups") or []:
            lookup_loader.get(name, class_only=True)
        connection_loader.get(C.DEFAULT_TRANSPORT, class_only=True)

    def v2_playbook_on_task_start(self, task: Task, is_conditional: bool) -> None:
        _load_all(filter_loader, test_loader)

    def v2_playbook_on_handler_task_start(self, task: Task) -> None:
        _load_all(filter_loader, test_loader)

    def _load_connection_of(self, result: CallbackTaskResult) -> None:
        host = result.host
        if host.name in self._hosts_seen:
            return
        self._hosts_seen.add(host.name)
        # Only a plain name set on the host in the inventory; one from group_vars or a template is left to the worker.
        name = host.vars.get("ansible_connection")
        if isinstance(name, str) and name and "{" not in name:
            connection_loader.get(name, class_only=True)

    def v2_runner_on_ok(self, result: CallbackTaskResult) -> None:
        self._load_connection_of(result)

    def v2_runner_on_skipped(self, result: CallbackTaskResult) -> None:
        self._load_connection_of(result)

    def v2_runner_on_failed(self, result: CallbackTaskResult, ignore_errors: bool = False) -> None:
        self._load_connection_of(result)
