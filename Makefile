# Everything a developer or CI needs, from a fresh Debian 12 machine.
#   make test   - set up (venv, Docker engine, base image, artifacts, APT repository), lint, unit and integration tests,
#                 every Molecule scenario; ends with a table of the phases and their seconds
#   make demo   - local cluster in containers (from inventories/local) deployed by site.yml, and a smoke task
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

REPO      := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV      := $(REPO)/.venv
PY        ?= python3
export PATH := $(VENV)/bin:$(PATH)
export MOLECULE_NO_LOG := false
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0

KAFKA_VERSION        ?= 4.3.1
# The release the day2 scenario deploys first and upgrades from (molecule/day2/tests/test_90_upgrade.py).
KAFKA_UPGRADE_FROM   ?= 4.2.1
JMX_EXPORTER_VERSION ?= 1.0.1
SCENARIOS            ?= default kafka_dedicated secure

.PHONY: help
help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements.txt celery_kafka/pyproject.toml examples/demo_app/pyproject.toml testing/pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q -e 'celery_kafka[test,bench]'
	$(VENV)/bin/pip install -q -e examples/demo_app -e testing
	touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## Python virtualenv with pinned Ansible, Molecule, linters

.PHONY: docker
docker: ## Install and start the Docker engine if needed
	$(REPO)/scripts/ensure-docker.sh

.PHONY: image
image: docker ## Debian 12 systemd base image (debootstrap + import, cached)
	$(REPO)/scripts/build-base-image.sh

.PHONY: artifacts
artifacts: ## Kafka archive assembled from Maven Central, JMX exporter agent, promtool and amtool (cached)
	$(REPO)/scripts/build-kafka-archive.sh $(KAFKA_VERSION)
	$(REPO)/scripts/build-kafka-archive.sh $(KAFKA_UPGRADE_FROM)
	$(REPO)/scripts/fetch-jmx-exporter.sh $(JMX_EXPORTER_VERSION)
	$(REPO)/scripts/fetch-promtool.sh

# Wheels of the worker package, of the applications in APPS (project directories; the example app by default) and of
# all their dependencies, for nodes without a package index. SOURCE_DATE_EPOCH makes the project wheels
# byte-identical across rebuilds, so re-running the playbook copies nothing new; SHA256SUMS lets the roles compare
# the whole set in one step. Deploy an app with celery_worker_app and celery_worker_app_packages.
WHEELS := $(REPO)/.cache/wheels
APPS   ?= $(REPO)/examples/demo_app
$(WHEELS)/.stamp: $(VENV)/.stamp celery_kafka/pyproject.toml $(shell find celery_kafka/src $(APPS) -name '*.py' -o -name pyproject.toml)
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	SOURCE_DATE_EPOCH=315532800 $(VENV)/bin/pip wheel -q --wheel-dir $(WHEELS) ./celery_kafka $(APPS)
	cd $(WHEELS) && sha256sum *.whl > SHA256SUMS
	touch $@

.PHONY: wheels
wheels: $(WHEELS)/.stamp ## Wheels of the worker package, the apps in APPS (default: the example app) and their dependencies

.PHONY: debs
debs: image venv ## Local APT repository of every package the roles install (~/.cache/kcs-debs, once per machine; air-gap ready)
	$(REPO)/scripts/build-deb-repo.sh

.PHONY: deps
deps: venv image artifacts wheels debs ## All set-up, idempotent

.PHONY: lint
lint: venv ## yamllint, ansible-lint (production profile), ruff
	yamllint --strict .
	ansible-lint --offline
	ruff check .
	ruff format --check .

.PHONY: unit
unit: venv artifacts ## Unit tests (custom modules, preflight, alert rules and dashboards with promtool, the Celery package)
	pytest -q tests
	cd celery_kafka && pytest -q -p no:cacheprovider -m "not integration" tests

.PHONY: integration
integration: venv artifacts ## Celery package against a real Kafka broker started on 127.0.0.1
	cd celery_kafka && pytest -q -p no:cacheprovider -m integration tests

.PHONY: molecule
molecule: $(addprefix scenario-,$(SCENARIOS)) ## Every Molecule scenario

# molecule test -s <name>, e.g. `make scenario-secure`.
scenario-%: deps
	molecule test -s $*

# Faults under load (broker kill -9, rolling restart, worker OOM, worker kill -9, broker network cut, poison
# messages), every task id accounted for. They run in the default scenario, after the checks that need an undisturbed
# cluster; the table goes to .cache/test-results/<date>-chaos.txt.
.PHONY: chaos
chaos: scenario-default ## The default scenario, whose verifier ends with faults under a keyed load

# Day-2 operations on Kafka under a keyed load, every message accounted for: a broker replaced after losing its disk,
# a controller that lost its log refused, a rolling upgrade 4.2.1 -> 4.3.1 with the metadata version raised last.
# Not in make test (about 10 minutes alone, three times that beside the other scenarios). The worker rollout, ACLs
# and certificate renewal are in make test (default and secure scenarios).
.PHONY: day2
day2: scenario-day2 ## Kafka upgrade and node replacement under load (molecule/day2)

# One run, same machine: our transport (synchronous and deferred_acks publishing) on a local 3-broker KRaft cluster,
# kombu's stock confluentkafka transport on the same cluster, Redis, Celery's memory transport; scaling 1-3 workers;
# the cost of the worker's commits; and (BENCH_CONVERGE=1, minutes) site.yml on fresh bench- containers and its
# idempotent re-run. Appends to benchmarks/results/<date>-compare.txt.
BENCH_CONVERGE ?= 1
BENCH_ARGS     ?= --tasks 10000 --publish 2000 --scaling-tasks 5000
SUDO           := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: bench
bench: venv artifacts $(if $(filter 1,$(BENCH_CONVERGE)),image wheels) ## Benchmarks against the alternatives (not part of make test; BENCH_CONVERGE=0 skips the converge timing)
	command -v redis-server >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends redis-server rabbitmq-server; }
	PYTHONPATH=$(REPO)/celery_kafka/src python benchmarks/compare.py $(BENCH_ARGS) $(if $(filter 1,$(BENCH_CONVERGE)),--converge)
	PYTHONPATH=$(REPO)/celery_kafka/src python benchmarks/publish_rounds.py --rounds 7

# The demo's containers are named demo-<host> (so they never clash with Molecule's) and answer to <host> on their
# network; ansible_host follows the prefix. The local inventory's secrets are vaulted with a committed demo password.
DEMO_ANSIBLE = ANSIBLE_VAULT_PASSWORD_FILE=$(REPO)/inventories/local-vault-password \
	ansible-playbook -i $(REPO)/inventories/local -e '{"ansible_host": "demo-{{ inventory_hostname }}"}'

.PHONY: demo
demo: deps ## Local cluster in containers deployed by site.yml, then a smoke task (re-run converges it)
	$(DEMO_ANSIBLE) $(REPO)/playbooks/local-containers.yml
	$(DEMO_ANSIBLE) $(REPO)/site.yml
	python $(REPO)/scripts/demo-smoke.py --inventory $(REPO)/inventories/local
	@echo
	@echo "Prometheus:   http://127.0.0.1:9090   (targets: /targets, alerts: /alerts)"
	@echo "Alertmanager: http://127.0.0.1:9093"
	@echo "Grafana:      not installed in the demo (no registry here carries it; grafana_install_method=none)."
	@echo "              Its provisioning is in demo-monitor1:/etc/grafana; with internet set grafana_install_method=apt."
	@echo "Shell on a node: docker exec -it demo-celery1 bash     Stop: make demo-down"

.PHONY: demo-down
demo-down: venv ## Remove the demo's containers and network
	$(DEMO_ANSIBLE) $(REPO)/playbooks/local-containers.yml -e local_containers_state=absent

# Two lanes side by side on the 2 cores (scripts/phases.sh): the default scenario starts at once; unit, integration
# and the other two scenarios fill the other lane. Lint runs first so that a typo fails in a minute. The CPU is
# saturated either way, so the lanes end within minutes of each other; see
# benchmarks/results/2026-12-02-make-test-phases.txt.
TEST_LANES ?= scenario-default | unit integration scenario-kafka_dedicated scenario-secure

.PHONY: test
test: ## Everything CI runs, in phases, ending with a table of their seconds
	$(REPO)/scripts/phases.sh deps lint "lanes: $(TEST_LANES)"

.PHONY: clean
clean: ## Remove Molecule instances (keeps caches)
	-@for s in $(SCENARIOS); do molecule destroy -s $$s; done
