# AI Factory — every task a reader needs, each doing one obvious thing.
# `make demo` and `make test` work on a fresh machine: both run `setup` first.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup proto proto-check lint check test test-unit test-integration test-security test-chaos test-multihost demo bench bench-smoke \
        infra-up infra-down infra-status services-up clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

setup: ## install everything: Python venv, Debian packages, Kafka jars, Triton backend, buf, helm and Compose (Go)
	@bash deploy/setup.sh

proto: setup ## regenerate Python code from proto/ (pinned grpcio-tools)
	@bash deploy/tools/proto.sh gen

proto-check: setup ## fail when generated code is stale, buf lint fails, or a contract breaks vs HEAD~1
	@bash deploy/tools/proto.sh check-generated
	@bash deploy/tools/proto.sh lint
	@bash deploy/tools/proto.sh breaking

lint: setup ## ruff (lint and format) on aif, libs, services and tests; mypy on aif, libs and services
	@.venv/bin/ruff check aif libs services tests
	@.venv/bin/ruff format --check aif libs services tests
	@.venv/bin/mypy aif libs services

check: proto-check lint ## every static check

# pytest exits 5 when it collects nothing: that is not a failure of the suite.
test: setup check ## static checks, then every test suite (fixtures start Kafka, PostgreSQL, Redis, Triton)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-unit: setup ## fast tests, no infrastructure
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## tests against the real broker, databases and Triton
	@$(PY) -m pytest -m "integration or e2e" $(PYTEST_ARGS)

test-chaos: setup ## kill -9 each service, restart Kafka, PostgreSQL and Triton under load on a fresh factory; fails on any loss or doubling
	@$(PY) -m tests.chaos

test-multihost: setup ## every service, Kafka, PostgreSQL, Redis, Triton and the app on hosts of their own (network namespaces, a user each; root); the loop must close
	@$(PY) -m pytest tests/multihost -s $(PYTEST_ARGS)

test-security: setup ## identity, access and hostile-input suites (permission walk, tokens, mTLS, secure Kafka, gRPC fuzz, hostile topics, log search); ends with their sizes
	@rm -f build/test-security/sizes.txt; $(PY) -m pytest tests/security $(PYTEST_ARGS); rc=$$?; \
	  cat build/test-security/sizes.txt 2>/dev/null || echo "security: no suite ran"; exit $$rc

demo: setup ## the factory's main job end to end on embedded defaults
	@$(PY) -m aif.cli demo

bench: setup ## benchmarks: prints a table and writes build/bench.json
	@$(PY) -m tests.bench

bench-smoke: setup ## every benchmark part with tiny sizes: it runs, and every row has its baseline (CI)
	@$(PY) -m tests.bench --smoke

infra-up: setup ## start Kafka, PostgreSQL, Redis and Triton (reused when running)
	@$(PY) -m aif.infra up

infra-down: ## stop the infrastructure this project started
	@$(PY) -m aif.infra down

infra-status: ## show what answers on each infrastructure port
	@$(PY) -m aif.infra status

clean: infra-down ## stop everything and remove build outputs (keeps .venv)
	rm -rf build
