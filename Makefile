# The two commands a newcomer types: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CODE   := streams inference triage dashboards deploy

.PHONY: demo test lint bench chaos setup system-deps clean

demo: setup
	$(BIN)/ctriage demo

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check $(CODE) tests
	$(BIN)/mypy $(CODE)
	for model in inference/model_repository/*/1/model.py; do $(BIN)/mypy $$model || exit 1; done
	$(BIN)/lint-imports
	$(BIN)/python -m deploy.k8s.validate && $(BIN)/python -m deploy.compose.validate

bench: setup
	$(BIN)/pytest -m bench -s tests/bench

# Kills workers and brokers on a local 3-node cluster (docs/fault-tolerance.md), a few minutes;
# CTRIAGE_CHAOS_STUDIES=1000 for the issue's full size. Figures: tests/bench/results/chaos-*.json
chaos: setup
	$(BIN)/pytest -m chaos -s tests/chaos tests/integration/test_crash.py tests/integration/test_crash_restart.py

setup: system-deps $(VENV)/.installed

# Java and Maven run the Kafka broker (its jars are resolved from Maven Central on first start).
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java and Maven (Debian packages)"; \
	  apt-get update -qq && apt-get install -y -qq default-jdk-headless maven; }
	@# Orthanc + its DICOMweb plugin: the PACS that the ingestion tests send to and pull from.
	@[ -x /usr/sbin/Orthanc ] && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { \
	  echo "installing Orthanc and its DICOMweb plugin (Debian packages)"; \
	  apt-get update -qq && apt-get install -y -qq orthanc orthanc-dicomweb; }
	@# PostgreSQL (the reporting store) and Prometheus (metrics, alert rules): our own instances
	@# are started by the launchers in deploy/, never the packaged services.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing PostgreSQL and Prometheus (Debian packages)"; \
	  apt-get update -qq && apt-get install -y -qq postgresql prometheus; }
	@# Offline validation of the production manifests (make lint): Go fetches the operators' pinned
	@# CRD schemas through the Go module proxy; kubectl renders kustomize without a cluster.
	@command -v go >/dev/null || { \
	  echo "installing Go (Debian package golang-go)"; \
	  apt-get update -qq && apt-get install -y -qq golang-go; }
	@command -v kubectl >/dev/null || { \
	  echo "kubectl is missing: install the kubectl package (Kubernetes' apt repository) or a static kubectl binary on PATH; make lint renders deploy/k8s with it"; exit 1; }

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: ctriage needs Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

clean:
	rm -rf .ctriage $(VENV)
