"""README's examples run as written: every `$ redis-cli …` line of a console block gives the
output shown under it, and every python block runs (against a test server instead of :6379).
Also: `redis.conf.example` starts a server with the module loaded and configured."""

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import redis

from harness import REDIS_SERVER, _free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", README, re.S)


def console_steps(block):
    """[(argv, expected output)] from `$ redis-cli …` lines and the lines under them."""
    steps = []
    for line in block.splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] == "redis-cli", line
            steps.append((argv[1:], []))
        else:
            steps[-1][1].append(line)
    return [(argv, "\n".join(out)) for argv, out in steps]


def test_readme_has_examples():
    assert len(blocks("console")) >= 1 and len(blocks("python")) >= 2


@pytest.mark.parametrize("n", range(len(blocks("console"))))
def test_console_example(server, n):
    for argv, expected in console_steps(blocks("console")[n]):
        out = subprocess.run(
            ["redis-cli", "--no-raw", "-p", str(server.port), *argv],
            capture_output=True, text=True, timeout=10,
        )
        assert out.stdout.rstrip("\n") == expected, argv


@pytest.mark.parametrize("n", range(len(blocks("python"))))
def test_python_example(server, n):
    code = blocks("python")[n].replace("port=6379", f"port={server.port}")
    assert f"port={server.port}" in code, "examples must name port=6379 so the test can point them"
    exec(compile(code, f"README python block {n}", "exec"), {})
    # Every example releases what it takes.
    assert server.client().keys("lock:*") == []


def test_redis_conf_example_loads_the_module():
    port = _free_port()
    proc = subprocess.Popen(
        # No --dir: Redis changes into it before loading modules, and the example's module path
        # is relative to the repository root, as `make run` uses it.
        [REDIS_SERVER, str(ROOT / "redis.conf.example"), "--port", str(port), "--save", ""],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        c = redis.Redis(port=port, socket_timeout=5)

        def up():
            try:
                return c.ping()
            except redis.ConnectionError:
                return proc.poll() is not None  # stop polling if it died
        wait_until(up, timeout=10, message="redis.conf.example server up")
        assert proc.poll() is None, "server exited: bad redis.conf.example?"
        modules = [m[b"name"] if isinstance(m, dict) else m for m in c.execute_command("MODULE", "LIST")]
        assert any(b"lock" in (m if isinstance(m, bytes) else m[1]) for m in modules), modules
        assert c.config_get("lock.signal-expire") == {"lock.signal-expire": "1000"}
        assert c.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "NOWAIT") == b"me"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
