#!/usr/bin/env python3
"""Soak: N acquire/release cycles with waiters, timeouts and disconnects; memory must come back.

Starts its own server (tests/harness.py: $REDIS_SERVER with $LOCK_MODULE). Worker processes:
- pipelined processes: uncontended LOCK.ACQUIRE NOWAIT + LOCK.RELEASE pairs on rotating names
  (each release creates a signal list that expires), in batches;
- contention groups (a holder and a waiter connection on one hot lock), cycling through:
  hand-off on release, waiter TIMEOUT expiring, waiter disconnecting while queued, hand-off at
  the holder's expiry (deadline timer), CLIENT UNBLOCK of the waiter.
Every reply is checked (the id, OK, or null where the scenario says so).

Memory: a warm-up run, then every client disconnects and every key expires; baseline =
min(used_memory) over a few samples. Then --cycles cycles, same quiesce, end = min(used_memory).
Fails (exit 1) if |end - baseline| > 1% of baseline (--tolerance), if INFO lock shows waiters,
locks with waiters or tracked locks left, if keys are left, or on any wrong reply.

    tools/reliability/soak.py [--cycles 1000000] [--threads 1] [--groups 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))

from chaos import Resp, info_fields  # noqa: E402


class Failure(Exception):
    pass


class Soak:
    KINDS = ("pipelined", "handoff_release", "waiter_timeout", "waiter_disconnect",
             "handoff_expiry", "unblock")

    def __init__(self, a):
        # workers are processes (no GIL contention between the pipelined and the contended
        # ones); counters live in shared memory
        self.a = a
        self.counters = {k: mp.Value("q", 0) for k in self.KINDS}
        self.stop = mp.Event()
        self.error_q = mp.Queue()
        self.errors = []

    @property
    def done(self):
        return sum(v.value for v in self.counters.values())

    @property
    def kinds(self):
        return {k: v.value for k, v in self.counters.items()}

    def count(self, kind, n=1):
        c = self.counters[kind]
        with c.get_lock():
            c.value += n

    def fail(self, msg):
        self.error_q.put(msg)
        self.stop.set()

    # -- workloads ----------------------------------------------------------------------------
    def pipelined(self, idx):
        conn = Resp(self.port, 2 if idx % 2 == 0 else 3, timeout=30)
        batch = self.a.batch
        n = 0
        try:
            while not self.stop.is_set():
                cmds = []
                for i in range(batch):
                    name = f"s{idx}-{(n + i) % 500}"
                    oid = f"o{idx}-{n + i}"
                    cmds.append(("LOCK.ACQUIRE", name, "ID", oid, "PX", 10000, "NOWAIT"))
                    if i % 10 == 0:
                        cmds.append(("LOCK.RELEASE", name, oid, "SIGNAL-EXPIRE", 50))
                    else:
                        cmds.append(("LOCK.RELEASE", name, oid))
                out = []
                for c in cmds:
                    out.append(b"*%d\r\n" % len(c))
                    for x in c:
                        x = x if isinstance(x, bytes) else str(x).encode()
                        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
                conn.sock.sendall(b"".join(out))
                for i in range(batch):
                    r1, r2 = conn.read(), conn.read()
                    if r1 != f"o{idx}-{n + i}".encode() or r2 != b"OK":
                        return self.fail(f"pipelined cycle {n + i}: {r1!r} {r2!r}")
                n += batch
                self.count("pipelined", batch)
        except (OSError, ConnectionError) as e:
            self.fail(f"pipelined thread {idx}: {e!r}")
        finally:
            conn.close()

    def group(self, idx):
        rng = random.Random(idx)
        hot = f"hot{idx}"
        holder = Resp(self.port, 2, timeout=30)
        waiter = Resp(self.port, 3, timeout=30)
        wid_conn = waiter.call("CLIENT", "ID")
        n = 0
        mix = ["handoff_release"] * 8 + ["waiter_timeout"] * 3 + ["waiter_disconnect"] * 3 + \
            ["unblock"] * 3 + ["handoff_expiry"]
        if self.a.only:
            mix = [k for k in mix if k in self.a.only.split(",")]

        def waiters():
            info = holder.call("LOCK.INFO", hot)
            return dict(zip(info[::2], info[1::2]))[b"waiters"]

        def queued(n=1):
            deadline = time.monotonic() + 10
            while waiters() != n:
                if time.monotonic() > deadline:
                    raise Failure(f"{hot}: {waiters()} waiters queued after 10 s, expected {n}")

        try:
            while not self.stop.is_set():
                n += 1
                h, w = f"h{idx}-{n}", f"w{idx}-{n}"
                kind = rng.choice(mix)
                px = 30 if kind == "handoff_expiry" else 10000
                r = holder.call("LOCK.ACQUIRE", hot, "ID", h, "PX", px, "NOWAIT")
                if r != h.encode():
                    raise Failure(f"{hot} holder acquire: {r!r}")
                timeout = "0.01" if kind == "waiter_timeout" else "5"
                waiter.send("LOCK.ACQUIRE", hot, "ID", w, "PX", 10000, "TIMEOUT", timeout)
                if kind == "waiter_timeout":
                    r = waiter.read()
                    if r is not None:
                        raise Failure(f"{hot} waiter with TIMEOUT 0.01 got {r!r}")
                    expect_w = None
                    if holder.call("LOCK.RELEASE", hot, h) != b"OK":
                        raise Failure(f"{hot} release after the waiter timed out failed")
                elif kind == "handoff_expiry":
                    expect_w = w.encode()  # granted at the holder's 30 ms deadline
                else:
                    queued()
                    expect_w = w.encode()
                if kind == "handoff_release":
                    if holder.call("LOCK.RELEASE", hot, h) != b"OK":
                        raise Failure(f"{hot} release by holder failed")
                elif kind == "waiter_disconnect":
                    waiter.close()
                    queued(0)
                    waiter = Resp(self.port, 3, timeout=30)
                    wid_conn = waiter.call("CLIENT", "ID")
                    expect_w = None
                    if holder.call("LOCK.RELEASE", hot, h) != b"OK":
                        raise Failure(f"{hot} release after disconnect failed")
                elif kind == "unblock":
                    if holder.call("CLIENT", "UNBLOCK", wid_conn) != 1:
                        raise Failure(f"{hot}: CLIENT UNBLOCK found no blocked waiter")
                    r = waiter.read()
                    if r is not None:
                        raise Failure(f"{hot}: unblocked waiter got {r!r}")
                    expect_w = None
                    if holder.call("LOCK.RELEASE", hot, h) != b"OK":
                        raise Failure(f"{hot} release after unblock failed")
                # handoff_expiry: the holder's 30 ms lock expires, the waiter gets it
                if expect_w is not None:
                    r = waiter.read()
                    if r != expect_w:
                        raise Failure(f"{hot} {kind}: waiter got {r!r}, expected {expect_w!r}")
                    if waiter.call("LOCK.RELEASE", hot, w) != b"OK":
                        raise Failure(f"{hot}: waiter's release failed")
                self.count(kind)
        except Failure as e:
            self.fail(str(e))
        except (OSError, ConnectionError) as e:
            self.fail(f"group {idx}: {e!r}")
        finally:
            holder.close()
            waiter.close()

    def run_phase(self, cycles):
        target = self.done + cycles
        self.stop.clear()
        procs = [mp.Process(target=self.pipelined, args=(i,), daemon=True)
                 for i in range(self.a.threads)]
        procs += [mp.Process(target=self.group, args=(i,), daemon=True)
                  for i in range(self.a.groups)]
        for p in procs:
            p.start()
        last = time.monotonic()
        while not self.stop.wait(0.2):
            if self.done >= target:
                self.stop.set()
            elif time.monotonic() - last > 10:
                last = time.monotonic()
                print(f"  {self.done} cycles {self.kinds}", flush=True)
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                self.errors.append(f"worker {p.name} did not finish within 60 s")
        while not self.error_q.empty():
            self.errors.append(self.error_q.get())

    # -- measurement ----------------------------------------------------------------------------
    def quiesce(self):
        """Wait until only the control connection is left and every key has expired, then until
        the module watches no lock deadline (`lock_deadline_timers` 0: a released lock leaves
        the schedule at once, an expired one at its check, a few ms after its deadline), at
        most --settle seconds."""
        deadline = time.monotonic() + 30
        while True:
            clients = self.ctl.call("CLIENT", "LIST").decode().strip().splitlines()
            dbsize = self.ctl.call("DBSIZE")
            if len(clients) == 1 and dbsize == 0:
                break
            if time.monotonic() > deadline:
                raise Failure(f"not quiet after 30 s: {len(clients)} clients, {dbsize} keys "
                              f"(e.g. {self.ctl.call('RANDOMKEY')!r})")
            time.sleep(0.05)
        settle_by = time.monotonic() + self.a.settle
        while (watched := info_fields(self.ctl, "lock").get("lock_deadline_timers", "0").strip()) != "0":
            if time.monotonic() > settle_by:
                raise Failure(f"the module still watches {watched} lock deadlines "
                              f"{self.a.settle}s after the keyspace emptied")
            time.sleep(0.05)

    def memory_breakdown(self):
        f = info_fields(self.ctl, "memory")
        return {k: f[k].strip() for k in ("used_memory", "used_memory_overhead", "used_memory_dataset",
                                           "mem_clients_normal", "used_memory_scripts",
                                           "used_memory_startup") if k in f}

    def used_memory(self):
        self.ctl.call("SLOWLOG", "RESET")  # slow-log entries keep copies of arguments
        samples = []
        for _ in range(3):  # the first INFO calls size the control client's buffers
            info_fields(self.ctl, "memory")
        for _ in range(5):
            samples.append(int(info_fields(self.ctl, "memory")["used_memory"]))
            time.sleep(0.1)
        return min(samples), samples

    def run(self):
        a = self.a
        from harness import RedisServer  # noqa: E402

        self.server = RedisServer()
        self.server.start()
        self.port = self.server.port
        try:
            self.ctl = Resp(self.port, 2, timeout=30)
            print(f"soak: {a.cycles} cycles, {a.threads} pipelined processes, {a.groups} contention "
                  f"groups, server {self.server._argv()[0]}", flush=True)
            t0 = time.monotonic()
            self.run_phase(a.warmup)
            if self.errors:
                raise Failure("; ".join(self.errors[:5]))
            self.quiesce()
            base, base_samples = self.used_memory()
            print(f"baseline used_memory after {self.done} warm-up cycles: {base} {base_samples}",
                  flush=True)
            print(f"  {self.memory_breakdown()}")
            start_done, start_kinds = self.done, self.kinds
            t1 = time.monotonic()
            self.run_phase(a.cycles)
            t2 = time.monotonic()
            if self.errors:
                raise Failure("; ".join(self.errors[:5]))
            self.quiesce()
            end, end_samples = self.used_memory()
            print(f"  {self.memory_breakdown()}")
            lock = info_fields(self.ctl, "lock")
            delta = end - base
            cycles = self.done - start_done
            print("=== soak summary")
            kinds = {k: v - start_kinds[k] for k, v in self.kinds.items()}
            print(f"cycles: {cycles} in {t2 - t1:.1f}s ({cycles / (t2 - t1):.0f}/s); by kind: {kinds}")
            print(f"used_memory: baseline {base}, end {end}, delta {delta:+d} bytes "
                  f"({100.0 * delta / base:+.3f}%), samples {end_samples}")
            queues = {k: lock.get(k, "?").strip() for k in
                      ("lock_waiters", "lock_locks_with_waiters", "lock_locks_tracked")}
            print(f"module queues: {queues}; timeouts {lock.get('lock_timeouts', '?').strip()}, "
                  f"disconnected waiters {lock.get('lock_disconnected_waiters', '?').strip()}, "
                  f"hand-offs release/expiry {lock.get('lock_handoffs_release', '?').strip()}/"
                  f"{lock.get('lock_handoffs_expiry', '?').strip()}")
            problems = []
            if abs(delta) > base * a.tolerance / 100:
                problems.append(f"used_memory moved {delta:+d} bytes (> {a.tolerance}% of {base})")
            for k, v in queues.items():
                if v != "0":
                    problems.append(f"INFO lock {k} = {v} with no client connected and no keys")
            if self.ctl.call("PING") != b"PONG" or not self.server.alive():
                problems.append("server not answering")
            print(f"total time {time.monotonic() - t0:.1f}s")
            for p in problems:
                print("PROBLEM:", p)
            print("soak: OK" if not problems else "soak: FAILED")
            return 0 if not problems else 1
        except Failure as e:
            print(f"soak: FAILED: {e}")
            return 1
        finally:
            problem = self.server.stop()
            if problem:
                print("PROBLEM:", problem)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1, help="pipelined uncontended processes")
    ap.add_argument("--groups", type=int, default=4, help="contention groups (holder + waiter)")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="at most this many seconds, once the keyspace is empty, for the module "
                    "to stop watching lock deadlines before measuring")
    ap.add_argument("--only", default="", help="contended kinds to run, comma separated: "
                    "handoff_release,waiter_timeout,waiter_disconnect,unblock,handoff_expiry")
    ap.add_argument("--tolerance", type=float, default=1.0, help="allowed used_memory change, %%")
    a = ap.parse_args()
    return Soak(a).run()


if __name__ == "__main__":
    sys.exit(main())
