"""One scenario table, run against python-redis-lock (`redis_lock`, Lua + BLPOP) and against
`redis_lock_native` on the same server: return values, exceptions and the resulting keyspace
must be identical. Any difference in a scenario's outcome list fails the test.

Each scenario gets a fresh server and runs python-redis-lock in db 0 and the drop-in in db 1:
no FLUSHALL in between (the module signals locks freed by a flush, which would leave a
lock-signal key behind for the second run)."""

import math

import pytest
import redis

import redis_lock
import redis_lock_native


def rec(fn):
    """('ok', value) or ('raise', exception class name)."""
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the outcome is what we compare
        return ("raise", type(e).__name__)


def ttl_bucket(c, key):
    pttl = c.pttl(key)
    return pttl if pttl < 0 else math.ceil(pttl / 1000)


def state(c, *locks):
    """Every key: type, value (a lock's id shown as its index in `locks`) and TTL in whole seconds."""
    roles = {lock.id.encode(): f"<lock{i}>" for i, lock in enumerate(locks)}
    out = []
    for k in sorted(c.keys()):
        t = c.type(k).decode()
        if t == "string":
            v = c.get(k)
            v = roles.get(v, v)
        elif t == "list":
            v = c.lrange(k, 0, -1)
        else:
            v = "?"
        out.append((k.decode(), t, v, ttl_bucket(c, k)))
    return out


# ---------------------------------------------------------------------------
# scenarios: fn(m, c) -> list of observations; m is the module under test


def acquire_release(m, c):
    a = m.Lock(c, "n")
    return [rec(lambda: a.acquire(blocking=False)), state(c, a), rec(a.release), state(c, a),
            rec(a.acquire), rec(a.release)]


def acquire_with_expire(m, c):
    a, b = m.Lock(c, "n", expire=5), m.Lock(c, "m", expire="3")
    return [rec(a.acquire), rec(lambda: b.acquire(timeout=3)), state(c, a, b)]


def busy_non_blocking(m, c):
    a, b = m.Lock(c, "n", id="A"), m.Lock(c, "n", id="B")
    return [rec(a.acquire), rec(lambda: b.acquire(blocking=False)), state(c, a, b),
            rec(b.locked), rec(b.get_owner_id)]


def busy_timeout(m, c):
    a, b = m.Lock(c, "n"), m.Lock(c, "n")
    return [rec(a.acquire), rec(lambda: b.acquire(timeout=1)), state(c, a, b)]


def already_acquired(m, c):
    a = m.Lock(c, "n", expire=10)
    return [rec(a.acquire), rec(a.acquire), rec(lambda: a.acquire(blocking=False)),
            rec(lambda: a.acquire(blocking=False, timeout=1)), rec(lambda: a.acquire(timeout=-1)),
            rec(lambda: a.acquire(timeout=20)),
            rec(lambda: m.Lock(c, "n", id=a.id).acquire(blocking=False)), state(c, a)]


def argument_errors(m, c):
    ok = m.Lock(c, "n", expire=2)
    return [rec(lambda: m.Lock(c, "n").acquire(blocking=False, timeout=1)),
            rec(lambda: m.Lock(c, "n").acquire(blocking=False, timeout=0)),
            rec(lambda: m.Lock(c, "n").acquire(timeout=-1)),
            rec(lambda: m.Lock(c, "n", expire=1).acquire(timeout=2)),
            rec(lambda: ok.acquire(timeout=2)),
            state(c, ok)]


def timeout_too_large_not_with_auto_renewal(m, c):
    a = m.Lock(c, "n", expire=1, auto_renewal=True)
    return [rec(lambda: a.acquire(timeout=5)), rec(lambda: a._lock_renewal_thread is not None),
            rec(a.release), rec(lambda: a._lock_renewal_thread), state(c, a)]


def constructor(m, c):
    return [rec(lambda: m.Lock(object(), "n")),
            rec(lambda: m.Lock(object(), "n", strict=False).blocking),
            rec(lambda: m.Lock(c, "n", auto_renewal=True)),
            rec(lambda: m.Lock(c, "n", expire=0, auto_renewal=True)),
            rec(lambda: m.Lock(c, "n", expire=-1)),
            rec(lambda: m.Lock(c, "n", id=5)),
            rec(lambda: m.Lock(c, b"n")),
            rec(lambda: m.Lock(c, "n", id=b"abc").id),
            rec(lambda: m.Lock(c, "n", id=b"\xff\xfe").id),
            rec(lambda: m.Lock(c, "n", id="text").id),
            rec(lambda: len(m.Lock(c, "n").id)),
            rec(lambda: m.Lock(c, "n", expire="7")._expire),
            rec(lambda: m.Lock(c, "n", expire=2.9)._expire),
            rec(lambda: m.Lock(c, "n", expire=0)._expire),
            rec(lambda: m.Lock(c, "n", expire=3, auto_renewal=True)._lock_renewal_interval),
            rec(lambda: m.Lock(c, "n", None, None, False, True, 1000, False).blocking),
            rec(lambda: m.Lock(c, "n").blocking),
            rec(lambda: m.Lock.blocking),
            state(c)]


def preset_id(m, c):
    a = m.Lock(c, "n", id="A")
    return [rec(a.acquire), rec(lambda: m.Lock(c, "n", id="A").acquire(blocking=False)),
            rec(lambda: m.Lock(c, "n", id=b"A").release()), state(c, a)]


def release_errors(m, c):
    a, b = m.Lock(c, "n"), m.Lock(c, "n")
    return [rec(a.release), rec(b.acquire), rec(a.release), state(c, a, b), rec(b.release), rec(b.release)]


def release_signal_expire(m, c):
    a = m.Lock(c, "n", signal_expire=3000)
    return [rec(a.acquire), rec(a.release), state(c, a)]


def extend_cases(m, c):
    a = m.Lock(c, "n", expire=100)
    out = [rec(a.extend), rec(a.acquire)]
    c.expire("lock:n", 5)
    out += [rec(a.extend), state(c, a), rec(lambda: a.extend(7)), state(c, a),
            rec(lambda: a.extend("9")), state(c, a), rec(lambda: a.extend(0)), state(c, a),
            rec(lambda: a.extend(-1)), rec(lambda: a.extend(None))]
    c.set("lock:n", "other")
    out += [rec(a.extend), rec(lambda: a.extend(5)), state(c, a)]
    return out


def extend_not_expirable(m, c):
    a = m.Lock(c, "n")
    return [rec(a.extend), rec(a.acquire), rec(lambda: a.extend(10)), state(c, a),
            rec(lambda: m.Lock(c, "n", id=a.id, expire=5).extend()), state(c, a)]


def reset_cases(m, c):
    a = m.Lock(c, "n", id="A")
    return [rec(a.acquire), rec(m.Lock(c, "n").reset), state(c, a), rec(m.Lock(c, "n").reset),
            rec(a.release), rec(m.Lock(c, "x", signal_expire=4000).reset), state(c, a)]


def locked_and_owner(m, c):
    a, b = m.Lock(c, "n", id="A"), m.Lock(c, "n")
    out = [rec(a.locked), rec(a.get_owner_id), rec(a.acquire), rec(a.locked), rec(b.locked),
           rec(b.get_owner_id), rec(lambda: a.id), rec(lambda: b._held), rec(lambda: a._held)]
    c.set("lock:bin", b"\xffab")
    out += [rec(m.Lock(c, "bin").get_owner_id), rec(m.Lock(c, "bin").locked)]
    return out


def reset_all_cases(m, c):
    a, b = m.Lock(c, "a"), m.Lock(c, "b", expire=50)
    c.set("other", "1")
    c.set("lockx", "1")
    return [rec(a.acquire), rec(b.acquire), rec(lambda: m.reset_all(c)), state(c, a, b),
            rec(lambda: m.reset_all(c)), rec(a.release)]


def context_manager(m, c):
    out = []
    with m.Lock(c, "n", expire=10) as lock:
        out += [type(lock).__name__, state(c, lock)]
    out.append(state(c, lock))

    def failing():
        with m.Lock(c, "n"):
            raise ZeroDivisionError

    out += [rec(failing), rec(lambda: c.exists("lock:n"))]
    holder = m.Lock(c, "n", id="H")
    holder.acquire()

    def busy():
        with m.Lock(c, "n", blocking=False):
            return "entered"

    out += [rec(busy), state(c, holder)]

    def lost():
        with m.Lock(c, "lost"):
            c.delete("lock:lost")

    out.append(rec(lost))
    return out


def already_started(m, c):
    a = m.Lock(c, "n", expire=5, auto_renewal=True)
    out = [rec(a.acquire)]
    c.delete("lock:n")
    out += [rec(a.acquire), state(c, a), rec(a.release), rec(lambda: a._lock_renewal_thread), state(c, a)]
    return out


def names_used_as_given(m, c):
    locks = [m.Lock(c, name) for name in ("", "with space", "{tag}x", "ünï", "lock:nested")]
    return [[rec(lambda: lk.acquire(blocking=False)) for lk in locks], state(c, *locks),
            [rec(lk.release) for lk in locks], state(c, *locks)]


SCENARIOS = [acquire_release, acquire_with_expire, busy_non_blocking, busy_timeout, already_acquired,
             argument_errors, timeout_too_large_not_with_auto_renewal, constructor, preset_id,
             release_errors, release_signal_expire, extend_cases, extend_not_expirable, reset_cases,
             locked_and_owner, reset_all_cases, context_manager, already_started, names_used_as_given]


# every scenario under RESP2 and RESP3, except the slow one (2 s) which runs under RESP3 only
CASES = [pytest.param(p, s, id=f"resp{p}-{s.__name__}")
         for p in (2, 3) for s in SCENARIOS if not (p == 2 and s is busy_timeout)]


@pytest.mark.parametrize("protocol,scenario", CASES)
def test_same_outcome(server, protocol, scenario):
    outcomes = {}
    for db, m in enumerate((redis_lock, redis_lock_native)):
        outcomes[m.__name__] = scenario(m, server.client(protocol=protocol, db=db))
    assert outcomes["redis_lock_native"] == outcomes["redis_lock"]


def test_table_is_not_vacuous(server):
    """The comparison sees behaviour: the scenarios do produce exceptions and keyspace states."""
    seen = set()
    c = server.client(protocol=3)
    for scenario in SCENARIOS:
        if scenario is busy_timeout:
            continue
        c.flushall()  # leftover signal keys do not matter here: only exceptions are collected
        for item in scenario(redis_lock_native, c):
            if isinstance(item, tuple) and item[0] == "raise":
                seen.add(item[1])
    assert {"AlreadyAcquired", "NotAcquired", "AlreadyStarted", "TimeoutNotUsable", "InvalidTimeout",
            "TimeoutTooLarge", "NotExpirable", "ValueError", "TypeError", "ZeroDivisionError"} <= seen
