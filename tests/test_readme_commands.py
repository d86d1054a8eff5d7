"""Every shell command the READMEs tell a person to type is checked, so a README that drifts
fails CI:

- `make run [PORT=N]` runs for real, as a newcomer would: it must serve the module on the port,
  and README's redis-cli examples must give the output shown when sent to that server;
- every other `make <target> [VAR=value …]` must be a target whose recipe expands (`make -n`);
- `pip install <dir>` must name a directory with a pyproject.toml;
- `redis-server --loadmodule /path/to/libredis_lock.so [args]` must start with the real module;
- `redis-cli …` lines are run by test_readme.py's console tests.

A command of any other shape in a README shell block fails the test: teach this file how to check
it instead of leaving it unchecked.
"""

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from harness import LOCK_MODULE, REDIS_SERVER, _free_port, wait_until
from test_readme import blocks as readme_blocks
from test_readme import console_steps

ROOT = Path(__file__).resolve().parent.parent
# The READMEs a newcomer reads for commands to type.
READMES = ["README.md", "tests/README.md", "lockbench/README.md", "clients/python/README.md",
           "tools/reliability/README.md"]


def shell_lines(text):
    """Command lines of ```sh blocks (comments stripped) and inline `make …` spans."""
    lines = []
    for block in re.findall(r"```(?:sh|shell|bash)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    lines += re.findall(r"`((?:make|pip install|redis-server --loadmodule)\b[^`]*)`", text)
    return lines


def readme_commands():
    out = []
    for name in READMES:
        path = ROOT / name
        if path.exists():
            out += [(name, line) for line in shell_lines(path.read_text())]
    return out


COMMANDS = readme_commands()


def kind(line):
    argv = shlex.split(line)
    if argv[0] == "make":
        return "make-run" if argv[1:2] == ["run"] else "make"
    if argv[:2] == ["pip", "install"]:
        return "pip"
    if argv[0] == "redis-server":
        return "redis-server"
    if argv[0] == "redis-cli":
        return "redis-cli"
    if argv[0].startswith(".venv/bin/"):
        return "venv-tool"
    if argv[0] == "./target/release/lockbench":
        return "lockbench"
    return "unknown"


def test_readmes_name_commands():
    kinds = {kind(line) for _, line in COMMANDS}
    assert {"make-run", "make", "pip"} <= kinds, kinds


@pytest.mark.parametrize("where,line", COMMANDS, ids=[f"{w}:{l}" for w, l in COMMANDS])
def test_every_readme_command_is_checkable(where, line):
    assert kind(line) != "unknown", f"{where}: teach test_readme_commands.py to check `{line}`"


MAKE_LINES = sorted({line for _, line in COMMANDS if kind(line) == "make"})


@pytest.mark.parametrize("line", MAKE_LINES)
def test_make_targets_exist(line):
    argv = shlex.split(line)
    out = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, f"`{line}`: {out.stderr}"


VENV_LINES = sorted({line for _, line in COMMANDS if kind(line) == "venv-tool"})


@pytest.mark.parametrize("line", VENV_LINES)
def test_venv_tools_exist(line):
    tool = ROOT / shlex.split(line)[0]
    assert tool.exists(), f"`{line}`: {tool} is missing after `make venv`"


LOCKBENCH = ROOT / "target" / "release" / "lockbench"


@pytest.mark.skipif(not LOCKBENCH.exists(), reason="lockbench not built (make bench-quick builds it)")
@pytest.mark.parametrize("line", sorted({l for _, l in COMMANDS if kind(l) == "lockbench"}))
def test_lockbench_lines_use_real_flags(line):
    usage = subprocess.run([str(LOCKBENCH), "--help"], capture_output=True, text=True,
                           timeout=30)
    assert usage.returncode == 0, usage.stderr
    for flag in (a for a in shlex.split(line)[1:] if a.startswith("--")):
        assert re.search(re.escape(flag) + r"\b", usage.stdout + usage.stderr), (line, flag)


@pytest.mark.parametrize("line", sorted({l for _, l in COMMANDS if kind(l) == "pip"}))
def test_pip_install_paths_exist(line):
    for arg in shlex.split(line)[2:]:
        if arg.startswith("."):
            assert (ROOT / arg / "pyproject.toml").exists(), line


def _start_and_ping(argv, port, cwd, timeout):
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    client = redis.Redis(port=port, socket_timeout=5)

    def up():
        if proc.poll() is not None:
            return True
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    wait_until(up, timeout=timeout, interval=0.2, message=f"`{' '.join(argv)}` serving")
    return proc, client


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    return out or ""


@pytest.mark.skipif(REDIS_SERVER != "redis-server",
                    reason="make run starts the redis-server on PATH; checked in that run")
def test_make_run_serves_the_readme_examples():
    """`make run PORT=<free port>` from the repository root, as README says, then README's
    redis-cli examples against it."""
    assert any(kind(l) == "make-run" for _, l in COMMANDS)
    port = _free_port()
    # A first build can take minutes on a fresh machine; here it is already built.
    proc, client = _start_and_ping(["make", "run", f"PORT={port}"], port, ROOT, timeout=300)
    try:
        assert proc.poll() is None, "make run exited:\n" + _stop(proc)
        assert client.execute_command("LOCK.ACQUIRE", "probe", "ID", "me", "NOWAIT") == b"me"
        assert client.execute_command("LOCK.RELEASE", "probe", "me") == b"OK"
        for block in readme_blocks("console"):
            client.flushall()
            for argv, expected in console_steps(block):
                out = subprocess.run(["redis-cli", "--no-raw", "-p", str(port), *argv],
                                     capture_output=True, text=True, timeout=10)
                assert out.stdout.rstrip("\n") == expected, argv
    finally:
        log = _stop(proc)
    assert "initialization failed" not in log, log


INLINE_SERVERS = sorted({l for _, l in COMMANDS if kind(l) == "redis-server"})


@pytest.mark.parametrize("line", INLINE_SERVERS)
def test_readme_redis_server_lines_start(line, tmp_path):
    """`redis-server --loadmodule /path/to/libredis_lock.so [signal-expire 1000]`: the real path,
    optional parts as written, on the server under test."""
    argv = shlex.split(line.replace("[", "").replace("]", ""))
    argv = [LOCK_MODULE if a.endswith("libredis_lock.so") else a for a in argv]
    port = _free_port()
    argv = [REDIS_SERVER, *argv[1:], "--port", str(port), "--save", "", "--dir", str(tmp_path)]
    proc, client = _start_and_ping(argv, port, tmp_path, timeout=20)
    try:
        assert proc.poll() is None, f"`{line}` exited:\n" + _stop(proc)
        assert client.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "NOWAIT") == b"me"
    finally:
        _stop(proc)
