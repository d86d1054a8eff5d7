"""Unmodified python-redis-lock processes and redis_lock_native processes share one lock:
mutual exclusion is checked on the server and every process completes all its sections."""

import interop_worker


def test_mixed_processes_mutual_exclusion(server):
    c = server.client()
    rounds = 25
    # python-redis-lock speaks RESP2 here, the drop-in RESP3: both protocols in one run
    plan = [("python", 2), ("python", 2), ("native", 3), ("native", 3)]
    interop_worker.run_all(server.port, plan, rounds)

    def count(key):
        return int(c.get(key) or 0)

    assert count("start-timeout") == 0
    assert count("violations") == 0
    assert count("inside") == 0
    assert count("timedout:python") == 0 and count("timedout:native") == 0
    assert count("done:python") == 2 * rounds
    assert count("done:native") == 2 * rounds
    assert c.exists("lock:shared") == 0
    # both kinds really ran against this lock: python's scripts and the module's commands
    stats = c.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] >= 2 * rounds
    assert stats["cmdstat_lock.release"]["calls"] == 2 * rounds
    # ... and they contended: python processes waited (BLPOP), native ones were queued
    # (which hand-offs happen, e.g. python's unlock to a queued native waiter, is up to timing)
    assert stats["cmdstat_blpop"]["calls"] >= 1
    assert c.info("lock")["lock_grants_after_wait"] >= 1

