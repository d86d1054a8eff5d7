"""A python-redis-lock process, a sync drop-in process and two asyncio drop-in processes (two
tasks on one loop each) share one lock: mutual exclusion checked on the server, every section completes."""

import interop_worker


def test_mixed_sync_asyncio_and_python_redis_lock(server):
    c = server.client()
    rounds = 20
    plan = [("python", 2), ("native", 3), ("asyncio", 3), ("asyncio", 2)]
    interop_worker.run_all(server.port, plan, rounds)

    def count(key):
        return int(c.get(key) or 0)

    assert count("start-timeout") == 0
    assert count("violations") == 0 and count("inside") == 0
    assert count("timedout:python") == count("timedout:native") == count("timedout:asyncio") == 0
    assert count("done:python") == rounds and count("done:native") == rounds
    assert count("done:asyncio") == 2 * 2 * rounds  # two processes, two tasks each
    assert c.exists("lock:shared") == 0
    stats = c.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] >= rounds  # python-redis-lock really ran
    assert stats["cmdstat_lock.release"]["calls"] == 5 * rounds
    assert c.info("lock")["lock_grants_after_wait"] >= 1  # and they contended
