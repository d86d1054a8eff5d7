"""python-redis-lock processes, sync drop-in processes and an asyncio drop-in process (two tasks
on one loop) share one lock: mutual exclusion checked on the server, every section completes."""

import multiprocessing

import interop_worker


def test_mixed_sync_asyncio_and_python_redis_lock(server):
    c = server.client()
    ctx = multiprocessing.get_context("spawn")
    rounds = 20
    plan = [("python", 2), ("native", 3), ("asyncio", 3), ("asyncio", 2)]
    start = ctx.Barrier(len(plan))
    procs = [ctx.Process(target=interop_worker.run, args=(kind, server.port, proto, "shared", rounds, start),
                         daemon=True, name=f"{kind}-{i}")
             for i, (kind, proto) in enumerate(plan)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(60)
        stuck = [p.name for p in procs if p.is_alive()]
        assert not stuck, f"processes still running: {stuck}"
        assert [p.exitcode for p in procs] == [0] * len(procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)

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
