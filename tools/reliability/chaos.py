#!/usr/bin/env python3
"""Chaos checker: mutual exclusion under kills, disconnects and pauses.

Starts its own server (tests/harness.py: $REDIS_SERVER with $LOCK_MODULE), then for --duration
seconds runs worker processes that contend on a few locks:

- module workers: LOCK.ACQUIRE <lock> ID <id> PX <ms> TIMEOUT <s> | NOWAIT over RESP2 or RESP3,
  a critical section, sometimes LOCK.EXTEND (from Lua), then LOCK.RELEASE;
- python-redis-lock workers: redis_lock.Lock(conn, name, expire=..., id=...).acquire(...), a
  critical section, release();
- session workers: module workers whose LOCK.ACQUIRE carries SESSION (the lock is bound to their
  connection, the server renews its lease, closing the connection frees it at once); while
  holding they record the lock's current deadline every ~100 ms.

Inside its critical section a holder writes, with the connection that holds the lock and in one
Lua script each (so the record is atomic with an ownership check):
    E|<section>|<TIME us>|<PEXPIRETIME ms>   on entry (only if GET lock:<name> is its id)
    X|<section>|<TIME us>|<PEXPIRETIME ms>   after LOCK.EXTEND (done inside the same script)
    X|<section>|<TIME us>|<PEXPIRETIME ms>   a session holder's periodic note (renewed lease)
    L|<section>|<TIME us>|<1 if still owner else 0>   on exit
to the list chaos:rec:<name>. The chaos monkey (this process) meanwhile SIGKILLs holders and
waiters, CLIENT KILLs connections, pauses the server (DEBUG SLEEP, CLIENT PAUSE WRITE/ALL) and
force-frees locks (LOCK.RESET / LOCK.RESETALL / DEL from Lua, recorded as R|<TIME us>|<what>).
Before it SIGKILLs a session worker or CLIENT KILLs its connection it SIGSTOPs the worker, waits
20 ms and records D|<worker tag>|<TIME us> (the connection is still open then, so the lock is
still held: the record is no later than the moment the server frees it).

A section is valid from its entry until: its exit if it still owned the lock then; otherwise
the last recorded deadline (a killed or stalled holder's lock lasts until it expires), or an
earlier reset; a session section also ends at its worker's first D record after its entry. An overlap is a section entered while an earlier section of the same lock was
still valid (with 1 ms of slack only where the end is a millisecond deadline).

Also checked: every module waiter that was not killed got exactly one reply per LOCK.ACQUIRE
(no reply within TIMEOUT + 15 s, or a second reply, is a violation); at the end no lock is
held without an expiry, every lock key disappears once its deadline has passed, INFO lock
reports no waiters, the server answers PING and did not crash.

Exit status 0 when no violation was found. Prints a summary:
    sections, kills (holders / waiters SIGKILLed), CLIENT KILLs, pauses, resets, overlaps,
    waiters with != 1 reply, orphaned locks.

Usage: tools/reliability/chaos.py [--duration 60] [--seed N] [--locks 3] [--module-workers 6]
       [--python-workers 3] [--session-workers 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# ARGV[3]: the record's letter, E (entry) unless given: a session holder's periodic note of
# its lock's current (server-renewed) deadline is the same record with X
ENTER = """
local t = redis.call('TIME')
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], (ARGV[3] or 'E') .. '|' .. ARGV[2] .. '|' .. t[1] .. string.format('%06d', t[2]) ..
           '|' .. redis.call('PEXPIRETIME', KEYS[1]))
return 1
"""
EXTEND = """
local r = redis.pcall('LOCK.EXTEND', ARGV[3], ARGV[1], 'PX', ARGV[4])
if type(r) == 'table' and r.err then return r.err end
local t = redis.call('TIME')
redis.call('RPUSH', KEYS[2], 'X|' .. ARGV[2] .. '|' .. t[1] .. string.format('%06d', t[2]) ..
           '|' .. redis.call('PEXPIRETIME', KEYS[1]))
return 'OK'
"""
# KEYS: rec lists; ARGV[1]: the tag of a session worker about to lose its connection
DEATH = """
local t = redis.call('TIME')
for i = 1, #KEYS do
  redis.call('RPUSH', KEYS[i], 'D|' .. ARGV[1] .. '|' .. t[1] .. string.format('%06d', t[2]))
end
return 1
"""
LEAVE = """
local t = redis.call('TIME')
local owned = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then owned = 1 end
redis.call('RPUSH', KEYS[2], 'L|' .. ARGV[2] .. '|' .. t[1] .. string.format('%06d', t[2]) ..
           '|' .. owned)
return owned
"""
# KEYS: rec lists; ARGV[1]: what ('reset' <name> | 'resetall' | 'del' <name>)
FREE = """
local r
if ARGV[1] == 'reset' then r = redis.call('LOCK.RESET', ARGV[2])
elseif ARGV[1] == 'del' then r = redis.call('DEL', 'lock:' .. ARGV[2])
else r = redis.call('LOCK.RESETALL') end
local t = redis.call('TIME')
for i = 1, #KEYS do
  redis.call('RPUSH', KEYS[i], 'R|' .. t[1] .. string.format('%06d', t[2]) .. '|' .. ARGV[1])
end
return r
"""

SOCKET_SLACK = 15.0  # s beyond a waiter's TIMEOUT before "no reply" is a violation


# ---------------------------------------------------------------------------------------------
# a minimal RESP2/RESP3 client (workers do not import the test harness: cheap to respawn)


class Resp:
    def __init__(self, port, protocol=2, timeout=30.0, name=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        if protocol == 3:
            self.call("HELLO", "3")
        if name:
            self.call("CLIENT", "SETNAME", name)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def call(self, *args, timeout=None):
        self.send(*args)
        return self.read(timeout)

    def pending(self) -> bool:
        if self.buf:
            return True
        self.sock.settimeout(0.001)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk
        return True

    def read(self, timeout=None):
        self.sock.settimeout(timeout or self.timeout)
        try:
            return self._value()
        finally:
            self.sock.settimeout(self.timeout)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _value(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t in (b"-", b"!"):
            if t == b"!":
                rest = self._exact(int(rest))
            return RuntimeError(rest.decode(errors="replace"))
        if t in (b":", b"("):
            return int(rest)
        if t in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self._value() for _ in range(n)]
        if t == b"%":
            return {self._value(): self._value() for _ in range(int(rest))}
        raise ValueError(f"bad RESP line {line!r}")

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data


# ---------------------------------------------------------------------------------------------
# workers


class WorkerBase:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed * 1000003 + a.index * 7919 + os.getpid())
        self.tag = f"{a.worker[0]}{a.index}-{os.getpid()}"
        self.out = open(a.out, "a", buffering=1)
        self.seq = 0
        self.stats = {"cycles": 0, "sections": 0, "lost_before_enter": 0, "lost_at_leave": 0,
                      "timeouts": 0, "conn_errors": 0, "errors": 0, "grants": 0,
                      "release_not_acquired": 0, "extends": 0, "requests": 0}

    def save_stats(self):
        """Overwritten after every cycle, so a SIGKILLed worker's counts survive it."""
        tmp = self.a.out + ".stats.tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats, f)
        os.replace(tmp, self.a.out + ".stats")

    def report(self, kind, **fields):
        self.out.write(json.dumps({"type": kind, "worker": self.tag, **fields}) + "\n")

    def violation(self, what, **fields):
        self.report("violation", what=what, **fields)

    def stop_requested(self, conn_call):
        try:
            return conn_call("EXISTS", "chaos:stop") == 1
        except Exception:
            return False

    def hold_time(self):
        r = self.rng.random()
        if r < 0.75:
            return self.rng.uniform(0, 0.03)
        if r < 0.93:
            return self.rng.uniform(0.05, 0.3)
        return self.rng.uniform(0.5, 2.5)  # often outlives the lock's expiry

    def main(self):
        disconnects = (ConnectionError, OSError, socket.timeout)
        if self.a.worker == "python":
            import redis
            disconnects += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        deadline = time.monotonic() + self.a.duration + 30
        while time.monotonic() < deadline:
            try:
                if not self.connect_and_run():
                    break
            except disconnects:
                # CLIENT KILL (or a pause longer than the socket timeout): start over on a new
                # connection; a section in progress is abandoned, its lock left to expire
                self.stats["conn_errors"] += 1
                time.sleep(0.05)
        self.save_stats()


class ModuleWorker(WorkerBase):
    def connect_and_run(self):
        protocol = self.rng.choice([2, 3])
        conn = Resp(self.a.port, protocol, timeout=30, name=f"chaos-{self.tag}")
        try:
            while True:
                if self.stop_requested(conn.call):
                    return False
                self.cycle(conn)
                self.save_stats()
        finally:
            conn.close()

    def cycle(self, conn):
        rng = self.rng
        name = f"c{rng.randrange(self.a.locks)}"
        self.seq += 1
        section = f"{self.tag}-{self.seq}"
        px = rng.choice([300, 800, 2000])
        if rng.random() < 0.15:
            wait, limit = ["NOWAIT"], 0.0
        else:
            limit = rng.choice([0.1, 0.5, 1.0, 3.0])
            wait = ["TIMEOUT", str(limit)]
        self.stats["cycles"] += 1
        self.stats["requests"] += 1
        t0 = time.monotonic()
        session = ["SESSION"] if self.a.worker == "session" else []
        conn.send("LOCK.ACQUIRE", name, "ID", section, "PX", px, *wait, *session)
        try:
            reply = conn.read(limit + SOCKET_SLACK)
        except socket.timeout:
            self.violation("no reply", lock=name, section=section, timeout=limit,
                           waited=round(time.monotonic() - t0, 3))
            raise ConnectionError("no reply")
        if conn.pending():
            extra = conn.read(1)
            self.violation("second reply", lock=name, section=section, first=repr(reply),
                           extra=repr(extra))
        if isinstance(reply, RuntimeError):
            self.stats["errors"] += 1
            if not str(reply).startswith(("UNBLOCKED", "LOADING")):
                self.violation("error reply", lock=name, error=str(reply))
            return
        if reply is None:
            self.stats["timeouts"] += 1
            return
        if reply != section.encode():
            self.violation("granted with another id", lock=name, section=section, reply=repr(reply))
            return
        self.stats["grants"] += 1
        key, rec = f"lock:{name}", f"chaos:rec:{name}"
        if conn.call("EVAL", ENTER, 2, key, rec, section, section) != 1:
            self.stats["lost_before_enter"] += 1
            return
        self.stats["sections"] += 1
        self.hold(conn, key, rec, section, self.hold_time())
        if rng.random() < 0.2:
            r = conn.call("EVAL", EXTEND, 2, key, rec, section, section, name,
                          rng.choice([500, 2000]))
            if r == b"OK":
                self.stats["extends"] += 1
                self.hold(conn, key, rec, section, self.hold_time() / 2)
        owned = conn.call("EVAL", LEAVE, 2, key, rec, section, section)
        if owned != 1:
            self.stats["lost_at_leave"] += 1
        r = conn.call("LOCK.RELEASE", name, section)
        if isinstance(r, RuntimeError):
            self.stats["release_not_acquired"] += 1
            if not str(r).startswith("NOTACQUIRED"):
                self.violation("release error", lock=name, error=str(r))


    def hold(self, conn, key, rec, section, secs):
        """The critical section. A session lock's lease is renewed by the server, so the deadline
        recorded at entry goes stale: a session holder notes the current one every ~100 ms."""
        if self.a.worker != "session":
            time.sleep(secs)
            return
        end = time.monotonic() + secs
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            if conn.call("EVAL", ENTER, 2, key, rec, section, section, "X") != 1:
                time.sleep(max(0.0, end - time.monotonic()))
                return


class PythonWorker(WorkerBase):
    def connect_and_run(self):
        import redis
        import redis_lock
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.redis_lock = redis_lock
        conn = redis.Redis(port=self.a.port, protocol=self.rng.choice([2, 3]),
                           socket_timeout=30, retry=Retry(NoBackoff(), 0),
                           single_connection_client=True, client_name=f"chaos-{self.tag}")
        try:
            while True:
                if self.stop_requested(conn.execute_command):
                    return False
                self.cycle(conn)
                self.save_stats()
        finally:
            conn.close()

    def cycle(self, conn):
        rng = self.rng
        redis_lock = self.redis_lock
        name = f"c{rng.randrange(self.a.locks)}"
        self.seq += 1
        section = f"{self.tag}-{self.seq}"
        expire = rng.choice([1, 2])
        lock = redis_lock.Lock(conn, name, expire=expire, id=section)
        self.stats["cycles"] += 1
        if rng.random() < 0.2:
            got = lock.acquire(blocking=False)
        else:
            got = lock.acquire(blocking=True, timeout=rng.choice([0.5, 1, expire]))
        if not got:
            self.stats["timeouts"] += 1
            return
        self.stats["grants"] += 1
        key, rec = f"lock:{name}", f"chaos:rec:{name}"
        if conn.eval(ENTER, 2, key, rec, section, section) != 1:
            self.stats["lost_before_enter"] += 1
            return
        self.stats["sections"] += 1
        time.sleep(self.hold_time())
        if conn.eval(LEAVE, 2, key, rec, section, section) != 1:
            self.stats["lost_at_leave"] += 1
        try:
            lock.release()
        except redis_lock.NotAcquired:
            self.stats["release_not_acquired"] += 1


def worker_main(a):
    w = PythonWorker(a) if a.worker == "python" else ModuleWorker(a)
    w.main()


# ---------------------------------------------------------------------------------------------
# the monkey and the checker


def info_fields(conn, section):
    text = conn.call("INFO", section)
    text = text.decode() if isinstance(text, bytes) else str(text)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Chaos:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.tmp = tempfile.mkdtemp(prefix="chaos-")
        self.workers = {}  # pid -> (Popen, kind, index, outfile)
        self.counts = {k: 0 for k in (
            "sigkill_holders", "sigkill_waiters", "client_kills", "debug_sleeps",
            "client_pauses", "resets", "deletes", "resetalls", "spawned", "session_deaths")}
        self.violations = []

    # -- server ----------------------------------------------------------------------------
    def start_server(self):
        sys.path.insert(0, str(REPO / "tests"))
        from harness import RedisServer  # noqa: E402

        self.server = RedisServer()
        self.server.start()
        self.port = self.server.port
        self.ctl = Resp(self.port, 2, timeout=30, name="chaos-monkey")
        self.ctl.call("DEL", "chaos:stop")

    # -- workers ---------------------------------------------------------------------------
    def spawn(self, kind, index):
        out = os.path.join(self.tmp, f"{kind}-{index}-{self.counts['spawned']}.jsonl")
        cmd = [sys.executable, __file__, "--worker", kind, "--index", str(index),
               "--port", str(self.port), "--seed", str(self.a.seed), "--out", out,
               "--locks", str(self.a.locks), "--duration", str(self.a.duration)]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(out + ".err", "w"))
        self.workers[p.pid] = (p, kind, index, out)
        self.counts["spawned"] += 1

    def reap_and_respawn(self):
        for pid, (p, kind, index, out) in list(self.workers.items()):
            if p.poll() is not None:
                del self.workers[pid]
                if p.returncode not in (0, -signal.SIGKILL):
                    self.violations.append(f"worker {kind}-{index} pid {pid} exited with "
                                           f"{p.returncode}: {self.tail(out + '.err')}")
                self.spawn(kind, index)

    @staticmethod
    def tail(path, n=800):
        try:
            return Path(path).read_text()[-n:]
        except OSError:
            return ""

    def clients(self):
        text = self.ctl.call("CLIENT", "LIST", "TYPE", "normal")
        out = []
        for line in text.decode().splitlines():
            f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if f.get("name", "").startswith("chaos-") and f["name"] != "chaos-monkey":
                out.append(f)
        return out

    @staticmethod
    def pid_of_tag(tag):
        # tags look like "m3-12345" / "p1-12345" / "s0-12345"; client names are "chaos-<tag>"
        try:
            return int(tag.split("-")[1])
        except (IndexError, ValueError):
            return None

    def session_death(self, pid):
        """Before a session worker loses its connection: freeze it, let what it already sent
        arrive, and record D (its lock is still held until the server sees the close)."""
        if pid not in self.workers or self.workers[pid][1] != "session":
            return False
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False
        time.sleep(0.02)
        tag = f"s{self.workers[pid][2]}-{pid}"
        names = [f"c{i}" for i in range(self.a.locks)]
        self.ctl.call("EVAL", DEATH, len(names), *[f"chaos:rec:{n}" for n in names], tag)
        self.counts["session_deaths"] += 1
        return True

    def kill_pid(self, pid):
        if pid in self.workers:
            self.session_death(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
            self.workers[pid][0].wait(timeout=10)
            return True
        return False

    # -- chaos actions ---------------------------------------------------------------------
    def inject_overlap(self):
        """--selftest-overlap: steal a held lock the way a broken module would (overwrite the
        owner while it is valid) and run a section with it; the analysis must report it."""
        for _ in range(200):
            owner = self.ctl.call("GET", "lock:c0")
            if owner:
                break
            time.sleep(0.01)
        else:
            return
        thief = "thief-1"
        self.ctl.call("SET", "lock:c0", thief, "PX", 500)
        self.ctl.call("EVAL", ENTER, 2, "lock:c0", "chaos:rec:c0", thief, thief)
        self.ctl.call("EVAL", LEAVE, 2, "lock:c0", "chaos:rec:c0", thief, thief)
        self.ctl.call("LOCK.RELEASE", "c0", thief)
        self.injected = True

    def act(self):
        rng = self.rng
        if self.a.selftest_overlap and not getattr(self, "injected", False):
            return self.inject_overlap()
        r = rng.random()
        names = [f"c{i}" for i in range(self.a.locks)]
        if r < 0.25:  # SIGKILL a holder
            owners = [self.ctl.call("GET", f"lock:{n}") for n in names]
            pids = [self.pid_of_tag(o.decode()) for o in owners if o]
            pids = [p for p in pids if p in self.workers]
            if pids and self.kill_pid(rng.choice(pids)):
                self.counts["sigkill_holders"] += 1
        elif r < 0.45:  # SIGKILL a waiter (blocked in LOCK.ACQUIRE or BLPOP)
            blocked = [c for c in self.clients() if "b" in c.get("flags", "")]
            if blocked:
                pid = self.pid_of_tag(rng.choice(blocked)["name"][len("chaos-"):])
                if self.kill_pid(pid):
                    self.counts["sigkill_waiters"] += 1
        elif r < 0.65:  # CLIENT KILL a worker's connection
            cs = self.clients()
            if cs:
                victim = rng.choice(cs)
                pid = self.pid_of_tag(victim["name"][len("chaos-"):])
                stopped = self.session_death(pid)
                if self.ctl.call("CLIENT", "KILL", "ID", victim["id"]) in (1, b"OK"):
                    self.counts["client_kills"] += 1
                if stopped:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
        elif r < 0.73:
            self.ctl.call("DEBUG", "SLEEP", rng.choice(["0.1", "0.3", "0.6"]))
            self.counts["debug_sleeps"] += 1
        elif r < 0.81:
            self.ctl.call("CLIENT", "PAUSE", rng.choice([100, 300, 800]), rng.choice(["WRITE", "ALL"]))
            self.counts["client_pauses"] += 1
        elif r < 0.91:
            n = rng.choice(names)
            self.ctl.call("EVAL", FREE, 1, f"chaos:rec:{n}", "reset", n)
            self.counts["resets"] += 1
        elif r < 0.97:
            n = rng.choice(names)
            self.ctl.call("EVAL", FREE, 1, f"chaos:rec:{n}", "del", n)
            self.counts["deletes"] += 1
        else:
            self.ctl.call("EVAL", FREE, len(names), *[f"chaos:rec:{n}" for n in names], "resetall")
            self.counts["resetalls"] += 1

    # -- analysis --------------------------------------------------------------------------
    def analyse(self):
        """Sections per lock from the records; returns (sections, overlaps, boundary cases)."""
        total, overlaps, boundary = 0, [], 0
        for i in range(self.a.locks):
            name = f"c{i}"
            recs = self.ctl.call("LRANGE", f"chaos:rec:{name}", 0, -1)
            sections, resets, deaths = {}, [], {}
            for raw in recs:
                f = raw.decode().split("|")
                if f[0] == "E":
                    sections[f[1]] = {"id": f[1], "start": int(f[2]), "deadlines": [int(f[3])],
                                      "leave": None, "owned_at_leave": False}
                elif f[0] == "X" and f[1] in sections:
                    sections[f[1]]["deadlines"].append(int(f[3]))
                elif f[0] == "L" and f[1] in sections:
                    sections[f[1]]["leave"] = int(f[2])
                    sections[f[1]]["owned_at_leave"] = f[3] == "1"
                elif f[0] == "R":
                    resets.append(int(f[1]))
                elif f[0] == "D":
                    deaths.setdefault(f[1], []).append(int(f[2]))
            for s in sections.values():
                if s["owned_at_leave"]:
                    end, exact = s["leave"], True
                else:
                    d = s["deadlines"][-1]
                    end, exact = (float("inf") if d < 0 else d * 1000), False
                    if d < 0:
                        self.violations.append(f"{name}: section {s['id']} held a lock without expiry")
                # a session lock is freed when its connection closes: no later than the D record
                tag = s["id"].rsplit("-", 1)[0]
                later_deaths = [d for d in deaths.get(tag, []) if d > s["start"]]
                if not s["owned_at_leave"] and later_deaths and later_deaths[0] < end:
                    end, exact = later_deaths[0], True
                later_resets = [r for r in resets if r > s["start"]]
                if later_resets and later_resets[0] < end:
                    end, exact = later_resets[0], True
                s["end"], s["exact"] = end, exact
            ordered = sorted(sections.values(), key=lambda s: s["start"])
            total += len(ordered)
            latest = None  # the section whose validity reaches furthest so far
            for s in ordered:
                if latest is not None and s["start"] < latest["end"]:
                    if latest["exact"] or s["start"] < latest["end"] - 1000:
                        overlaps.append((name, latest, s))
                    else:
                        boundary += 1  # within the deadline's millisecond
                if latest is None or s["end"] > latest["end"]:
                    latest = s
        return total, overlaps, boundary

    def run(self):
        a = self.a
        self.start_server()
        print(f"chaos: seed {a.seed}, {a.duration}s, server {self.server._argv()[0]} port "
              f"{self.port}, {a.module_workers} module + {a.python_workers} python + "
              f"{a.session_workers} session workers, "
              f"{a.locks} locks", flush=True)
        try:
            for i in range(a.module_workers):
                self.spawn("module", i)
            for i in range(a.python_workers):
                self.spawn("python", i)
            for i in range(a.session_workers):
                self.spawn("session", i)
            t_end = time.monotonic() + a.duration
            time.sleep(min(1.0, a.duration / 5))
            while time.monotonic() < t_end:
                self.reap_and_respawn()
                self.act()
                if not self.server.alive():
                    break
                time.sleep(self.rng.uniform(0.05, 0.4))
            self.finish()
        finally:
            for pid, (p, *_rest) in list(self.workers.items()):
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
            problem = self.server.stop()
            if problem:
                self.violations.append(problem)
        return self.report()

    def finish(self):
        if not self.server.alive():
            self.violations.append("server died:\n" + self.server.crash_excerpt())
            return
        self.ctl.call("CLIENT", "UNPAUSE")
        self.ctl.call("SET", "chaos:stop", "1")
        deadline = time.monotonic() + 3.0 + SOCKET_SLACK + 10
        while any(p.poll() is None for p, *_ in self.workers.values()):
            if time.monotonic() > deadline:
                stuck = [f"{k}-{i}" for p, k, i, _ in self.workers.values() if p.poll() is None]
                self.violations.append(f"workers did not stop within bounds: {stuck}")
                break
            time.sleep(0.05)
        for pid, (p, kind, index, out) in self.workers.items():
            if p.poll() is not None and p.returncode not in (0, -signal.SIGKILL):
                self.violations.append(f"worker {kind}-{index} exited with {p.returncode}: "
                                       f"{self.tail(out + '.err')}")
        self.stats = {}
        self.waiter_violations = 0
        for path in Path(self.tmp).glob("*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by SIGKILL
                if rec["type"] == "violation":
                    if rec["what"] in ("no reply", "second reply"):
                        self.waiter_violations += 1
                    self.violations.append(f"worker {rec['worker']}: {rec}")

        for path in Path(self.tmp).glob("*.stats"):
            try:
                for k, v in json.loads(path.read_text()).items():
                    self.stats[k] = self.stats.get(k, 0) + v
            except ValueError:
                pass
        # no lock held without expiry; every lock gone once its deadline passed
        self.orphans = 0
        names = [f"c{i}" for i in range(self.a.locks)]
        for n in names:
            if self.ctl.call("EXISTS", f"lock:{n}") and self.ctl.call("PTTL", f"lock:{n}") == -1:
                self.orphans += 1
                self.violations.append(f"lock:{n} is held without expiry by "
                                       f"{self.ctl.call('GET', f'lock:{n}')!r} after every client left")
        t0 = time.monotonic()
        while any(self.ctl.call("EXISTS", f"lock:{n}") for n in names):
            if time.monotonic() - t0 > 10:
                left = {n: (self.ctl.call("GET", f"lock:{n}"), self.ctl.call("PTTL", f"lock:{n}"))
                        for n in names}
                self.orphans += sum(1 for v in left.values() if v[0] is not None)
                self.violations.append(f"locks still held 10 s after every client left: {left}")
                break
            time.sleep(0.05)
        lock_info = info_fields(self.ctl, "lock")
        if lock_info.get("lock_waiters", "0").strip() != "0":
            self.violations.append(f"INFO lock reports waiters after every client left: "
                                   f"{lock_info.get('lock_waiters')}")
        self.sections, self.overlaps, self.boundary = self.analyse()
        for name, a, b in self.overlaps[:20]:
            self.violations.append(
                f"OVERLAP on {name}: {b['id']} entered at {b['start']} us while {a['id']} "
                f"(entered {a['start']}, valid until {a['end']}, "
                f"{'left owning' if a['owned_at_leave'] else 'deadline/reset'}) was valid")
        if self.ctl.call("PING") != b"PONG":
            self.violations.append("server does not answer PING")
        self.lock_info = lock_info

    def report(self):
        c = self.counts
        s = getattr(self, "stats", {})
        kills = c["sigkill_holders"] + c["sigkill_waiters"]
        lines = [
            "=== chaos summary",
            f"seed: {self.a.seed}",
            f"duration: {self.a.duration}s",
            f"sections: {getattr(self, 'sections', 0)} (boundary cases within 1 ms of a deadline: "
            f"{getattr(self, 'boundary', 0)})",
            f"kills: {kills} (holders {c['sigkill_holders']}, waiters {c['sigkill_waiters']} SIGKILLed)",
            f"client kills: {c['client_kills']}",
            f"session workers' connections closed by kills: {c['session_deaths']}",
            f"pauses: {c['debug_sleeps'] + c['client_pauses']} (DEBUG SLEEP {c['debug_sleeps']}, "
            f"CLIENT PAUSE {c['client_pauses']})",
            f"forced frees: LOCK.RESET {c['resets']}, DEL {c['deletes']}, LOCK.RESETALL {c['resetalls']}",
            f"worker processes started: {c['spawned']}",
            f"module requests: {s.get('requests', 0)}, grants (module + python) {s.get('grants', 0)}, "
            f"timeouts/busy {s.get('timeouts', 0)}, lost before entry {s.get('lost_before_enter', 0)}, "
            f"lost at exit {s.get('lost_at_leave', 0)}, connection errors {s.get('conn_errors', 0)}",
            f"overlaps: {len(getattr(self, 'overlaps', []))}",
            f"waiters with != 1 reply: {getattr(self, 'waiter_violations', 0)}",
            f"orphaned locks: {getattr(self, 'orphans', 0)}",
            f"violations: {len(self.violations)}",
        ]
        print("\n".join(lines))
        for v in self.violations[:30]:
            print("VIOLATION:", v)
        ok = not self.violations
        print("chaos: OK" if ok else "chaos: FAILED")
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--locks", type=int, default=3)
    ap.add_argument("--module-workers", type=int, default=6)
    ap.add_argument("--python-workers", type=int, default=3)
    ap.add_argument("--session-workers", type=int, default=3)
    ap.add_argument("--selftest-overlap", action="store_true",
                    help="steal one held lock mid-run: the checker must report an overlap")
    # internal: worker mode
    ap.add_argument("--worker", choices=["module", "python", "session"])
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--port", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    if a.worker:
        worker_main(a)
        return 0
    return Chaos(a).run()


if __name__ == "__main__":
    sys.exit(main())
