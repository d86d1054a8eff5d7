"""Mixed fleets: python-redis-lock 4.0.1 clients and LOCK.* clients on the same locks."""

import inspect
import random
import subprocess
import sys
import threading
import time

import pytest
import redis
import redis_lock

from harness import (Background, acquire_bg, assert_pttl, error_code, lock_info, wait_until,
                     wait_waiters)


def blpop_waiting(c, client_id) -> bool:
    for cl in c.client_list():
        if str(cl.get("id")) == str(client_id) and cl.get("cmd") == "blpop":
            return True
    return False


def test_python_lock_seen_and_released_by_module(server, protocol):
    c = server.client(protocol=protocol)
    lock = redis_lock.Lock(c, "n", expire=30)
    assert lock.acquire(blocking=False)
    token = lock.id.encode() if isinstance(lock.id, str) else lock.id
    assert c.execute_command("LOCK.OWNER", "n") == token
    assert c.execute_command("LOCK.ACQUIRE", "n", "NOWAIT") is None
    assert c.execute_command("LOCK.RELEASE", "n", token) == b"OK"
    assert not lock.locked()
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]


def test_module_lock_seen_and_released_by_python(server, protocol):
    c = server.client(protocol=protocol)
    token = c.execute_command("LOCK.ACQUIRE", "n", "EX", "10")
    assert redis_lock.Lock(c, "n").locked()
    assert redis_lock.Lock(c, "n").get_owner_id() in (token, token.decode())
    assert not redis_lock.Lock(c, "n").acquire(blocking=False)
    redis_lock.Lock(c, "n", id=token.decode()).release()
    assert c.exists("lock:n") == 0
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]


def test_module_lock_extended_by_python(server, protocol):
    c = server.client(protocol=protocol)
    token = c.execute_command("LOCK.ACQUIRE", "n", "EX", "5")
    redis_lock.Lock(c, "n", id=token.decode(), expire=5).extend(40)
    assert_pttl(c, "lock:n", 40000)


def test_python_waiter_woken_by_module_release(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    py = Background(server, lambda conn: redis_lock.Lock(conn, "n").acquire(timeout=8),
                    protocol=protocol, label="python").start()
    wait_until(lambda: blpop_waiting(c, py.client_id), message="python waiter in BLPOP")
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert py.result() is True
    assert py.elapsed < 5, py.elapsed  # woken by the signal, not by its BLPOP timeout
    assert c.get("lock:n") not in (None, b"holder")


def test_python_waiter_woken_by_module_lock_expiry(server, protocol):
    """python-redis-lock never signals an expiry; with the module loaded it is signalled."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    py = Background(server, lambda conn: redis_lock.Lock(conn, "n").acquire(timeout=8),
                    protocol=protocol, label="python").start()
    assert py.result() is True
    assert py.elapsed < 5, py.elapsed
    assert c.get("lock:n") not in (None, b"holder")


def test_python_reset_hands_over_to_module_waiter(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.Lock(c, "n").reset()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"


def test_python_reset_all_hands_over_to_module_waiter(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    c.execute_command("LOCK.ACQUIRE", "m", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.reset_all(c)
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"
    assert c.exists("lock:m") == 0


def test_python_release_hands_over_to_module_waiter_no_barging(server, protocol):
    """A python release while a module waiter is queued: the module waiter gets the lock,
    a python acquire attempt afterwards fails (the lock is held, not free)."""
    c = server.client(protocol=protocol)
    py_lock = redis_lock.Lock(c, "n", expire=30)
    assert py_lock.acquire(blocking=False)
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    py_lock.release()
    assert w.result(timeout=5) == b"w"
    assert not redis_lock.Lock(c, "n").acquire(blocking=False)
    assert c.get("lock:n") == b"w"


# ---------------------------------------------------------------------------
# expiry across the two kinds of clients


def _pexpiretime(c, key) -> int:
    return int(c.execute_command("PEXPIRETIME", key))


def _python_acquire_bg(server, name, protocol, timeout=10):
    """python-redis-lock acquire(timeout=...) in a thread; reply (acquired, id, wall time)."""

    def fn(conn):
        lock = redis_lock.Lock(conn, name)
        ok = lock.acquire(timeout=timeout)
        return ok, lock.id.encode(), time.time()

    c = server.client(protocol=protocol)
    py = Background(server, fn, protocol=protocol, label=f"python {name}").start()
    wait_until(lambda: py.done.is_set() or blpop_waiting(c, py.client_id),
               message="python waiter in BLPOP")
    assert not py.done.is_set(), (py.reply, py.error)
    return py


def test_module_lock_expiry_wakes_python_acquire_within_200ms(server, protocol):
    """python-redis-lock alone would sleep until its BLPOP timeout (10 s): with the module the
    expiry is signalled, and acquire() returns within 200 ms of the module holder's deadline.
    Every repetition must make it (Redis's active expiry is left on, as in production)."""
    c = server.client(protocol=protocol)
    lateness = []
    for i in range(3):
        name = f"e{i}"
        c.execute_command("LOCK.ACQUIRE", name, "ID", "holder", "PX", "300")
        deadline = _pexpiretime(c, f"lock:{name}")
        py = _python_acquire_bg(server, name, protocol)
        ok, token, returned_at = py.result(timeout=12)
        assert ok is True
        assert c.get(f"lock:{name}") == token
        lateness.append(round(returned_at * 1000 - deadline, 1))
    print(f"\npython acquire() after module lock expiry, ms after the deadline: {lateness}")
    assert all(-2 <= x < 200 for x in lateness), lateness


def test_python_lock_expiry_grants_module_waiter_at_its_deadline(server, protocol):
    """A python holder (expire=1) never releases. With Redis's active expiry switched off only
    the module's deadline timer can notice the expiry: the module waiter gets the lock right at
    the python lock's deadline (generous bound; the precise figure is in test_wakeups)."""
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    py_lock = redis_lock.Lock(c, "n", expire=1)
    assert py_lock.acquire(blocking=False)
    deadline = _pexpiretime(c, "lock:n")
    w = acquire_bg(server, "n", "ID", "w", "PX", "60000", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert w.result(timeout=5) == b"w"
    lateness = _pexpiretime(c, "lock:n") - 60000 - deadline
    print(f"\nmodule waiter after python lock expiry: {lateness} ms after the deadline")
    assert 0 <= lateness < 50, lateness
    assert c.get("lock:n") == b"w"
    with pytest.raises(redis_lock.NotAcquired):
        py_lock.release()
    assert c.get("lock:n") == b"w"


def test_python_extend_keeps_module_waiter_waiting_past_the_old_deadline(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "200")
    t0 = time.monotonic()
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    holder = redis_lock.Lock(c, "n", id="holder", expire=30)
    holder.extend()
    assert_pttl(c, "lock:n", 30000)
    time.sleep(max(0.0, 0.45 - (time.monotonic() - t0)))  # the assertion: nothing happens
    assert w.is_running()
    assert c.get("lock:n") == b"holder"
    holder.release()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"


def test_python_extend_shortening_module_lock_grants_at_the_new_deadline(server, protocol):
    """python extend(1) on a module lock that had PX 30000 and a module waiter: the lock now
    expires after 1 s, and the waiter must get it within a few ms of that deadline (contract:
    "on expiry of a lock that has waiters, the next waiter gets it within a couple of
    milliseconds of the deadline"). Active expiry is off so that only the module acts."""
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "30000")
    w = acquire_bg(server, "n", "ID", "w", "PX", "60000", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.Lock(c, "n", id="holder").extend(expire=1)
    deadline = _pexpiretime(c, "lock:n")
    assert w.result(timeout=2.5) == b"w"
    lateness = _pexpiretime(c, "lock:n") - 60000 - deadline
    assert 0 <= lateness < 50, lateness


def test_python_auto_renewal_keeps_module_waiter_waiting(server, protocol):
    """A python holder with expire=1 and auto_renewal: past its first deadline the lock is
    still its own (renewed by EXPIRE from the renewal thread), the module waiter must not be
    granted; python's release hands it over."""
    c = server.client(protocol=protocol)
    py_lock = redis_lock.Lock(c, "n", expire=1, auto_renewal=True)
    assert py_lock.acquire(blocking=False)
    t0 = time.monotonic()
    token = py_lock.id.encode()
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    time.sleep(max(0.0, 1.3 - (time.monotonic() - t0)))  # the assertion: nothing happens
    assert w.is_running()
    assert c.get("lock:n") == token
    py_lock.release()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"


# ---------------------------------------------------------------------------
# python's API on module-held locks, the module's commands on python-held locks


def test_python_api_on_module_held_lock(server, protocol):
    c = server.client(protocol=protocol)
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder") == b"holder"  # no expiry
    holder = redis_lock.Lock(c, "n", id="holder")
    other = redis_lock.Lock(c, "n", id="other")
    assert holder.locked() and other.locked()
    assert other.get_owner_id() == "holder"
    with pytest.raises(redis_lock.NotExpirable):
        holder.extend(expire=10)
    with pytest.raises(redis_lock.NotAcquired):
        other.extend(expire=10)
    with pytest.raises(redis_lock.NotAcquired):
        other.release()
    with pytest.raises(redis_lock.AlreadyAcquired):
        holder.acquire(blocking=False)
    assert other.acquire(blocking=False) is False
    assert c.get("lock:n") == b"holder" and c.pttl("lock:n") == -1
    # reset() of a module lock with nobody waiting: free and signalled
    other.reset()
    assert c.execute_command("LOCK.OWNER", "n") is None
    assert not holder.locked()
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]
    # reset_all() over several module locks
    for name in ("a", "b", "c"):
        c.execute_command("LOCK.ACQUIRE", name, "EX", "100")
    redis_lock.reset_all(c)
    for name in ("a", "b", "c"):
        assert c.execute_command("LOCK.OWNER", name) is None
        assert c.lrange(f"lock-signal:{name}", 0, -1) == [b"1"]


def test_module_commands_on_python_held_lock(server, protocol):
    c = server.client(protocol=protocol)
    py_lock = redis_lock.Lock(c, "n", expire=10)
    assert py_lock.acquire(blocking=False)
    token = py_lock.id.encode()
    assert c.execute_command("LOCK.OWNER", "n") == token
    info = lock_info(c, "n")
    assert info["owner"] == token
    assert 0 < int(info["ttl-ms"]) <= 10000
    assert int(info["waiters"]) == 0
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("LOCK.ACQUIRE", "n", "ID", token)
    assert error_code(ei.value) == "ALREADYACQUIRED"
    assert c.execute_command("LOCK.ACQUIRE", "n", "NOWAIT") is None
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("LOCK.EXTEND", "n", "other", "EX", "30")
    assert error_code(ei.value) == "NOTACQUIRED"
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("LOCK.RELEASE", "n", "other")
    assert error_code(ei.value) == "NOTACQUIRED"
    assert c.execute_command("LOCK.EXTEND", "n", token, "PX", "60000") == b"OK"
    assert_pttl(c, "lock:n", 60000)
    py_lock.extend()  # python keeps managing it
    assert_pttl(c, "lock:n", 10000)
    assert py_lock.locked() and py_lock.get_owner_id() == py_lock.id
    py_lock.release()
    assert c.execute_command("LOCK.OWNER", "n") is None
    # a python lock without expiry cannot be extended by the module either
    forever = redis_lock.Lock(c, "f")
    assert forever.acquire(blocking=False)
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("LOCK.EXTEND", "f", forever.id, "EX", "5")
    assert error_code(ei.value) == "NOTEXPIRABLE"
    assert lock_info(c, "f")["ttl-ms"] == -1


def test_module_reset_and_resetall_wake_python_waiters(server, protocol):
    c = server.client(protocol=protocol)
    a = redis_lock.Lock(c, "a")
    b = redis_lock.Lock(c, "b", expire=100)
    assert a.acquire(blocking=False) and b.acquire(blocking=False)
    pa = _python_acquire_bg(server, "a", protocol)
    assert c.execute_command("LOCK.RESET", "a") == 1
    ok, token_a, _ = pa.result(timeout=5)
    assert ok is True and pa.elapsed < 5
    assert c.get("lock:a") == token_a
    pb = _python_acquire_bg(server, "b", protocol)
    assert c.execute_command("LOCK.RESETALL") == 2
    ok, token_b, _ = pb.result(timeout=5)
    assert ok is True and pb.elapsed < 5
    assert c.get("lock:b") == token_b
    assert c.exists("lock:a") == 0
    with pytest.raises(redis_lock.NotAcquired):
        b.release()


# ---------------------------------------------------------------------------
# mixed contention: python processes and module clients on one lock

def critical_section(c, label, token, name):
    """Runs while holding the lock. INCR/DECR of `inside` and the append-only `log` prove
    exclusion on the server's own order of commands. Also run by the python worker processes
    (its source is part of PY_WORKER)."""
    inside = c.incr("inside")
    owner = c.get("lock:" + name)
    c.rpush("log", "enter %s %d %d" % (label, inside, owner == token))
    c.incr("sections")
    left = c.decr("inside")
    c.rpush("log", "exit %s %d" % (label, left))


PY_WORKER = inspect.getsource(critical_section) + r'''
import sys, time
import redis, redis_lock

port, protocol, name, label, count = sys.argv[1:6]
port, protocol, count = int(port), int(protocol), int(count)
c = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=20)
c.rpush("ready", label)
if not c.blpop("go", 20):
    sys.exit("no start signal")
end = time.monotonic() + 15
done = 0
while done < count and time.monotonic() < end:
    lock = redis_lock.Lock(c, name)
    if not lock.acquire(timeout=5):
        c.rpush("timeouts", label)
        continue
    critical_section(c, label, lock.id.encode(), name)
    lock.release()
    done += 1
c.rpush("finished", "%s %d" % (label, done))
'''


def test_mixed_contention_never_two_holders(server):
    n_py, n_mod, per_client = 3, 3, 50
    total = (n_py + n_mod) * per_client
    name = "mixed"
    c = server.client(protocol=3)
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", PY_WORKER, str(server.port), str(2 + i % 2),
                               name, f"py{i}", str(per_client)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(n_py)]
    try:
        wait_until(lambda: c.llen("ready") == n_py or any(p.poll() is not None for p in procs),
                   timeout=20, message="python workers ready")
        assert c.llen("ready") == n_py, [p.communicate()[0] for p in procs if p.poll() is not None]

        go = threading.Event()

        def module_worker(label):
            def fn(conn):
                go.wait(10)
                end = time.monotonic() + 15
                done = timeouts = 0
                while done < per_client and time.monotonic() < end:
                    tok = conn.execute_command("LOCK.ACQUIRE", name, "ID", f"{label}-{done}",
                                               "TIMEOUT", "10")
                    if tok is None:
                        timeouts += 1
                        continue
                    critical_section(conn, label, tok, name)
                    assert conn.execute_command("LOCK.RELEASE", name, tok) == b"OK"
                    done += 1
                    # think time outside the lock (workload shape, not ordering): lets python
                    # waiters find the lock free between module waiters
                    time.sleep(random.uniform(0, 0.004))
                return done, timeouts
            return fn

        mods = [Background(server, module_worker(f"mod{i}"), protocol=2 + i % 2,
                           label=f"mod{i}").start() for i in range(n_mod)]
        c.lpush("go", *["1"] * n_py)
        go.set()
        for m in mods:
            assert m.result(timeout=20) == (per_client, 0), m.label
        outputs = []
        for p in procs:
            out, _ = p.communicate(timeout=20)
            outputs.append(out)
            assert p.returncode == 0, out.decode(errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - t0

    finished = sorted(x.decode() for x in c.lrange("finished", 0, -1))
    assert finished == sorted(f"py{i} {per_client}" for i in range(n_py)), (finished, outputs)
    assert c.lrange("timeouts", 0, -1) == []

    # the server's own order of the log proves there were never two holders
    log = [x.decode() for x in c.lrange("log", 0, -1)]
    assert len(log) == 2 * total
    holder = None
    max_inside = 0
    kinds, switches = [], 0
    for entry in log:
        parts = entry.split()
        if parts[0] == "enter":
            assert holder is None, f"{parts[1]} entered while {holder} held the lock: {entry}"
            holder = parts[1]
            max_inside = max(max_inside, int(parts[2]))
            assert parts[2] == "1", entry
            assert parts[3] == "1", f"lock:{name} did not hold {holder}'s id inside: {entry}"
            kind = holder[:2]
            if kinds and kinds[-1] != kind:
                switches += 1
            kinds.append(kind)
        else:
            assert parts[1] == holder and parts[2] == "0", entry
            holder = None
    assert max_inside == 1
    assert holder is None
    assert int(c.get("inside")) == 0
    assert int(c.get("sections")) == total
    assert kinds.count("py") == n_py * per_client and kinds.count("mo") == n_mod * per_client
    assert c.exists(f"lock:{name}") == 0
    assert lock_info(c, name)["waiters"] == 0
    print(f"\nmixed contention: {total} sections in {elapsed:.1f}s, "
          f"{switches} hand-overs between python and module holders")
    assert switches >= 1
    assert elapsed < 20, elapsed
