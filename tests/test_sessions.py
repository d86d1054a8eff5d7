"""SESSION locks: held while the holder's connection lives, freed the moment it closes."""

import socket
import subprocess
import sys
import time

import pytest
import redis

from harness import acquire_bg, lock_info, wait_until, wait_waiters
from topology import info_field, start_replica, sync


HOLDER = """
import sys, time, redis
c = redis.Redis(port=int(sys.argv[1]))
assert c.execute_command("LOCK.ACQUIRE", "x", "ID", "dead", "SESSION", "PX", sys.argv[2]) == b"dead"
print("held", flush=True)
time.sleep(3600)
"""


def start_holder(server, lease_ms=10000):
    """A process holding lock x with SESSION; returns it once the lock is held."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(server.port), str(lease_ms)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_sigkilled_holder_hands_the_lock_to_the_next_module_waiter_at_once(server):
    c = server.client()
    holder = start_holder(server)
    w = acquire_bg(server, "x", "ID", "next", "TIMEOUT", "20")
    wait_waiters(c, "x", 1)
    t0 = time.monotonic()
    holder.kill()
    holder.wait()
    assert w.result() == b"next"
    took = time.monotonic() - t0
    assert took < 0.5, f"next waiter granted {took * 1000:.0f} ms after the holder died"
    assert int(info_field(c, "lock", "lock_session_frees")) == 1


PY_WAITER = """
import sys, redis, redis_lock
conn = redis.Redis(port=int(sys.argv[1]))
lock = redis_lock.Lock(conn, "x", id="py")
print("waiting", flush=True)
print(lock.acquire(timeout=20), flush=True)
"""


def test_sigkilled_holder_wakes_a_python_redis_lock_process(server):
    c = server.client()
    holder = start_holder(server)
    waiter = subprocess.Popen([sys.executable, "-c", PY_WAITER, str(server.port)],
                              stdout=subprocess.PIPE, text=True)
    assert waiter.stdout.readline().strip() == "waiting"
    # python-redis-lock's acquire: SET NX fails, then BLPOP on the signal key.
    wait_until(lambda: int(info_field(c, "clients", "blocked_clients")) == 1, timeout=10,
               message="python waiter in BLPOP")
    t0 = time.monotonic()
    holder.kill()
    holder.wait()
    assert waiter.stdout.readline().strip() == "True"
    took = time.monotonic() - t0
    waiter.wait(timeout=10)
    assert took < 1.0, f"python waiter woke {took * 1000:.0f} ms after the holder died"
    assert c.get("lock:x") == b"py"


def test_a_short_lease_holds_while_the_connection_lives(server, make_server):
    replica = start_replica(make_server, server)
    c, r = server.client(), replica.client()
    holder = server.client(single_connection_client=True)
    assert holder.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "PX", "300", "SESSION") == b"me"
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert c.get("lock:x") == b"me"
        sync(c)
        # the replica first: a renewal between the two reads only moves the primary's later
        replica_deadline = r.pexpiretime("lock:x")
        primary_deadline = c.pexpiretime("lock:x")
        assert 0 < replica_deadline <= primary_deadline
        assert primary_deadline > int(time.time() * 1000), "lease not renewed"
        time.sleep(0.05)
    # Every 100 ms over 5 s: ~50; a loaded machine delays timers, so ask for far fewer.
    assert int(info_field(c, "lock", "lock_session_renewals")) >= 10
    assert lock_info(c, "x")["session"] == holder.client_id()
    holder.close()
    wait_until(lambda: c.get("lock:x") is None, timeout=2, message="freed on close")


def test_client_kill_frees_it(server):
    c = server.client()
    holder = server.client(single_connection_client=True)
    holder.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "SESSION")
    c.execute_command("CLIENT", "KILL", "ID", holder.client_id())
    wait_until(lambda: c.get("lock:x") is None, timeout=2, message="freed by CLIENT KILL")


def test_the_servers_idle_timeout_frees_it(server):
    c = server.client()
    c.config_set("timeout", 1)
    holder = server.client(single_connection_client=True)
    holder.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "SESSION", "EX", "60")
    wait_until(lambda: c.get("lock:x") is None, timeout=10, message="freed by idle timeout")


def test_an_output_buffer_limit_disconnect_frees_it(server):
    c = server.client()
    c.set("big", "v" * 200_000)
    c.config_set("client-output-buffer-limit", "normal 65536 0 0")
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"LOCK.ACQUIRE x ID me SESSION\r\n")
    assert s.recv(100).startswith(b"$2\r\nme")
    # Never read: the replies overflow the hard limit. (GETRANGE copies into the output buffer;
    # Valkey sends a plain GET of a big value by reference, which the limit does not count.)
    s.sendall(b"GETRANGE big 0 -1\r\n" * 20)
    wait_until(lambda: c.get("lock:x") is None, timeout=5, message="freed by output buffer limit")
    s.close()


@pytest.mark.parametrize("loss", ["reset", "expiry", "del", "overwrite", "rename", "flushall",
                                  "release"])
@pytest.mark.parametrize("taker", ["module", "python"])
def test_a_connection_that_lost_its_lock_never_frees_the_next_holders(server, loss, taker):
    c = server.client()
    a = server.client(single_connection_client=True)
    assert a.execute_command("LOCK.ACQUIRE", "x", "ID", "a", "SESSION", "PX", "200") == b"a"
    if loss == "reset":
        c.execute_command("LOCK.RESET", "x")
    elif loss == "expiry":
        # The server is blocked longer than the lease: it expires although A is connected.
        c.execute_command("DEBUG", "SLEEP", "0.4")
        wait_until(lambda: c.get("lock:x") is None, timeout=2, message="expired")
    elif loss == "del":
        c.delete("lock:x")
    elif loss == "rename":
        c.rename("lock:x", "lock:elsewhere")
        c.delete("lock:elsewhere")
    elif loss == "flushall":
        c.flushall()
    elif loss == "release":
        assert a.execute_command("LOCK.RELEASE", "x", "a") == b"OK"
    else:
        c.set("lock:x", "intruder")
        c.delete("lock:x")
    # B takes it (with A's own id, the worst case), then A's connection closes. A python-redis-lock
    # SET NX is not seen by the module as a grant: only a binding dropped at the loss keeps A's
    # close from freeing it.
    if taker == "module":
        assert c.execute_command("LOCK.ACQUIRE", "x", "ID", "a", "NOWAIT", "EX", "60") == b"a"
    else:
        assert c.set("lock:x", "a", nx=True, ex=60)
    a_id = a.client_id()
    a.close()
    wait_until(lambda: not any(cl["id"] == a_id for cl in c.client_list()), timeout=2,
               message="A's connection gone")
    time.sleep(0.05)  # the free step runs from a 0 ms timer
    assert c.get("lock:x") == b"a", f"{loss}: a stale close freed the new holder's lock"
    assert lock_info(c, "x")["session"] is None
    assert int(info_field(c, "lock", "lock_session_frees")) == 0


def test_a_session_waiter_is_bound_to_its_own_connection(server):
    c = server.client()
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "first")
    w = acquire_bg(server, "x", "ID", "w", "SESSION", "PX", "500")
    wait_waiters(c, "x", 1)
    shown = c.execute_command("LOCK.WAITERS", "x")
    assert dict(zip(shown[0][::2], shown[0][1::2]))[b"session"] == 1
    c.execute_command("LOCK.RELEASE", "x", "first")
    assert w.result() == b"w"
    assert lock_info(c, "x")["session"] == w.client_id
    time.sleep(0.8)
    assert c.get("lock:x") == b"w", "renewed while its connection lives"
    w.conn.close()
    wait_until(lambda: c.get("lock:x") is None, timeout=2, message="freed when the waiter left")


def test_failover_lets_the_lock_lapse_within_one_lease(server, make_server):
    replica = start_replica(make_server, server)
    c, r = server.client(), replica.client()
    holder = server.client(single_connection_client=True)
    holder.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "SESSION", "PX", "500")
    sync(c)
    r.execute_command("REPLICAOF", "NO", "ONE")
    t0 = time.monotonic()
    assert r.get("lock:x") == b"me"
    wait_until(lambda: r.execute_command("LOCK.ACQUIRE", "x", "ID", "new", "NOWAIT") == b"new",
               timeout=3, interval=0.02, message="grantable on the promoted replica")
    assert time.monotonic() - t0 < 0.5 + 0.5  # one lease, plus slack for a loaded machine
    assert lock_info(r, "x")["session"] is None


def test_session_from_a_script_is_refused_and_changes_nothing(server):
    c = server.client()
    with pytest.raises(redis.ResponseError) as e:
        c.eval("return redis.call('LOCK.ACQUIRE', 'x', 'SESSION', 'NOWAIT')", 0)
    assert str(e.value).startswith("SESSION cannot be used from a script"), e.value  # ERR …
    c.function_load("#!lua name=t\nredis.register_function('acq', function(k, a) "
                    "return redis.call('LOCK.ACQUIRE', 'x', 'SESSION', 'NOWAIT') end)")
    with pytest.raises(redis.ResponseError) as e:
        c.fcall("acq", 0)
    assert str(e.value).startswith("SESSION cannot be used from a script"), e.value
    assert c.exists("lock:x") == 0


def test_session_inside_multi_binds_to_the_exec_caller(server):
    c = server.client()
    caller = server.raw()
    caller_id = caller.call("CLIENT", "ID")
    assert caller.call("MULTI") == b"OK"
    assert caller.call("LOCK.ACQUIRE", "x", "ID", "tx", "SESSION") == b"QUEUED"
    assert caller.call("EXEC") == [b"tx"]
    assert lock_info(c, "x")["session"] == caller_id
    assert c.pttl("lock:x") > 9000, "session-lease default 10 s"
    caller.close()
    wait_until(lambda: c.get("lock:x") is None, timeout=2, message="freed with the EXEC caller")


def test_session_lease_config_and_extend(make_server):
    s = make_server("session-lease", 2000)
    c = s.client()
    assert c.config_get("lock.session-lease") == {"lock.session-lease": "2000"}
    holder = s.client(single_connection_client=True)
    holder.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "SESSION")
    assert 1000 < c.pttl("lock:x") <= 2000
    holder.execute_command("LOCK.EXTEND", "x", "me", "PX", "30000")
    assert c.pttl("lock:x") > 20000
    time.sleep(0.3)
    assert lock_info(c, "x")["session"] == holder.client_id()
    c.config_set("lock.session-lease", 500)
    with pytest.raises(redis.ResponseError):
        c.config_set("lock.session-lease", 0)
