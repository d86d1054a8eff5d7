"""Worker for test_native_interop.py (a separate process, started with multiprocessing 'spawn').

Runs `rounds` critical sections on one lock with either python-redis-lock ("python") or
redis_lock_native ("native"). Inside each section it INCRs the server-side counter `inside`;
a value above 1 means two processes were inside at once and is counted in `violations`.
"""

import multiprocessing
import time


def run_all(port, plan, rounds, name="shared", join_timeout=60):
    """Start one worker process per (kind, protocol) of `plan`, all released at once by a barrier;
    fail if one is still running after `join_timeout` s or exits with an error."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(plan))
    procs = [ctx.Process(target=run, args=(kind, port, proto, name, rounds, start), daemon=True,
                         name=f"{kind}-{i}")
             for i, (kind, proto) in enumerate(plan)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(join_timeout)
        stuck = [p.name for p in procs if p.is_alive()]
        assert not stuck, f"processes still running: {stuck}"
        assert [p.exitcode for p in procs] == [0] * len(procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)


def run(kind, port, protocol, name, rounds, start):
    """`start` is a multiprocessing Barrier shared by all workers."""
    import redis

    if kind == "asyncio":
        import asyncio

        return asyncio.run(_run_async(port, protocol, name, rounds, start))

    if kind == "python":
        import redis_lock as mod
    else:
        import redis_lock_native as mod

    c = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
    c.ping()
    try:
        start.wait(30)  # a barrier: every process starts its sections at the same moment
    except Exception:  # noqa: BLE001 - threading.BrokenBarrierError
        c.incr("start-timeout")
        return
    for _ in range(rounds):
        lock = mod.Lock(c, name, expire=10)
        if not lock.acquire(timeout=10):
            c.incr(f"timedout:{kind}")
            continue
        try:
            if c.incr("inside") > 1:
                c.incr("violations")
            time.sleep(0.002)
            c.decr("inside")
            c.incr(f"done:{kind}")
        finally:
            lock.release()
    c.close()


async def _run_async(port, protocol, name, rounds, start, tasks=2):
    """The asyncio drop-in: `tasks` tasks on one event loop, `rounds` sections each."""
    import asyncio

    import redis.asyncio

    import redis_lock_native.asyncio as arl

    c = redis.asyncio.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
    await c.ping()
    try:
        await asyncio.get_running_loop().run_in_executor(None, start.wait, 30)
    except Exception:  # noqa: BLE001 - threading.BrokenBarrierError
        await c.incr("start-timeout")
        return

    async def sections():
        for _ in range(rounds):
            lock = arl.Lock(c, name, expire=10)
            if not await lock.acquire(timeout=10):
                await c.incr("timedout:asyncio")
                continue
            try:
                if await c.incr("inside") > 1:
                    await c.incr("violations")
                await asyncio.sleep(0.002)
                await c.decr("inside")
                await c.incr("done:asyncio")
            finally:
                await lock.release()

    await asyncio.gather(*(sections() for _ in range(tasks)))
    await c.aclose()
