"""Fixtures for the redis_lock_native tests, built on the project's integration harness
(/work/main/tests/harness.py): every test gets fresh redis-server(s) with the lock module.

    server        a started server with the module loaded
    make_server   factory, as in tests/conftest.py
    protocol      parametrized 2 / 3 (RESP2 and RESP3 clients)
    c             server.client(protocol): bytes replies, 10 s socket timeout, no retries
"""

import sys
from pathlib import Path

import pytest

HARNESS_DIR = Path(__file__).resolve().parents[3] / "tests"
sys.path.insert(0, str(HARNESS_DIR))

from harness import RedisServer  # noqa: E402


@pytest.fixture
def make_server():
    servers = []

    def factory(*module_args, extra_config=(), load_module=True, env=None):
        s = RedisServer(module_args=module_args, extra_config=extra_config,
                        load_module=load_module, env=env)
        servers.append(s)
        return s.start()

    yield factory

    problems = [p for p in (s.stop() for s in servers) if p]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


@pytest.fixture
def c(server, protocol):
    return server.client(protocol=protocol)
