# Every target runs the set-up first; a warm set-up takes seconds.
SHELL := /bin/bash
STACK ?= dev
PYTEST_ARGS ?=

.PHONY: setup up preview refresh destroy outputs api-token api-ca status jobs-export test test-fast test-unit lint bench clean-slate lab-up lab-down

setup:
	@scripts/setup.sh

up: setup
	@scripts/stack.sh up $(STACK)

preview: setup
	@scripts/stack.sh preview $(STACK)

refresh: setup
	@scripts/stack.sh refresh $(STACK)

destroy: setup
	@scripts/stack.sh destroy $(STACK)

# Set-up progress goes to stderr here, so stdout is the outputs' JSON alone.
outputs:
	@scripts/setup.sh >&2
	@scripts/stack.sh outputs $(STACK)

# The API's token (the UI's password, any user name) and the stack's CA (what a browser or curl
# trusts); set-up progress to stderr, so stdout is the value alone.
api-token api-ca:
	@scripts/setup.sh >&2
	@scripts/stack.sh $@ $(STACK)

# The live cluster: a table, jobs summed up by state and those that need attention listed
# (ALL=1: every job; JSON=1: JSON, every job; WATCH=1: refreshed in place). Exit 0 healthy,
# 1 degraded, 2 broken or unreadable; make itself turns any failure into 2, so scripts that
# need 1 apart from 2 run `scripts/status.sh STACK [--json]`.
status:
	@scripts/setup.sh >&2
	@scripts/status.sh $(STACK) $(if $(JSON),--json,) $(if $(ALL),--all,) $(if $(WATCH),--watch,)

# Jobs in the stack's cluster that it does not declare (or JOBS=a,b), written as a job file (OUT=path).
jobs-export: setup
	@source scripts/env.sh && python scripts/jobs_export.py $(STACK) $(if $(JOBS),--jobs $(JOBS),) $(if $(OUT),--out $(OUT),)

# All tests: fast unit tests, then real integration tests on the local Docker, TEST_WORKERS
# modules at a time (each module whole on one worker, in the order tests/conftest.py gives),
# then the timing-sensitive modules (marked alone) by themselves. Each part ends with its
# slowest tests and its time; the last line is the whole run's.
TEST_WORKERS ?= 3
test: setup
	@source scripts/env.sh && started=$$(date +%s) && \
	python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone" \
		--durations=15 $(PYTEST_ARGS) tests; parallel=$$?; \
	python -m pytest -m alone --durations=15 $(PYTEST_ARGS) tests; alone=$$?; \
	echo "make test: $$(( $$(date +%s) - started )) s in all (parallel part: exit $$parallel, alone: exit $$alone)"; \
	[ $$parallel -eq 0 ] && [ $$alone -eq 0 ]

# The unit tests and one real three-node cluster (the test marked smoke): a few minutes at most.
test-fast: setup
	@source scripts/env.sh && python -m pytest --durations=5 -m "not integration or smoke" $(PYTEST_ARGS) tests/unit tests/integration

test-unit: setup
	@source scripts/env.sh && python -m pytest $(PYTEST_ARGS) tests/unit

# Benchmarks: writes docs/benchmarks.md and bench/results.json (takes several minutes).
bench: setup
	@source scripts/env.sh && python bench/run.py

lint: setup
	@source scripts/env.sh && ruff check . && ruff format --check . && mypy components nodeside tests testing __main__.py

# Lists (YES=1: removes) every project Docker object and stack `make setup` did not make.
clean-slate: setup
	@source scripts/env.sh && python scripts/clean_slate.py $(if $(YES),--yes,)

# The lab: three Docker hosts on this machine in network namespaces (ssh://, tcp:// with TLS); state in .lab/.
lab-up: setup
	@source scripts/env.sh && python scripts/lab.py up

lab-down: setup
	@source scripts/env.sh && python scripts/lab.py down
