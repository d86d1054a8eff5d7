"""Fixtures: a fresh redis-server with the lock module for every test.

    server        a started server with the module loaded with default arguments
    make_server   factory: make_server("signal-expire", 500, extra_config=[("maxmemory", "10mb")],
                  load_module=True) -> started RedisServer (any number per test)
    protocol      parametrized 2 / 3 (use it to run a test under RESP2 and RESP3)
    c             server.client(protocol) for the parametrized protocol
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
