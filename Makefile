# make            build target/release/libredis_lock.so
# make run        install what is missing, build, start redis-server with the module (PORT=6379)
# make test       install what is missing, build, run every test (unit + integration)
# make unit       Rust unit tests only
# make integration  integration tests only (pytest against real servers)

PORT ?= 6379
MODULE := target/release/libredis_lock.so
VENV := .venv
PYTEST_ARGS ?=

.PHONY: all build run test unit integration deps venv clean

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

integration: build venv
	LOCK_MODULE=$(CURDIR)/$(MODULE) $(VENV)/bin/pytest tests $(PYTEST_ARGS)

test: unit integration

clean:
	cargo clean
	rm -rf $(VENV)
