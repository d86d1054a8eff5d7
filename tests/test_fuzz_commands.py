"""Randomized command fuzzer against a live server, and the short chaos run.

`test_fuzz_commands` sends random LOCK.* commands: random option names, orders and counts,
binary garbage, empty strings, huge and negative numbers, very long names and ids, names whose
`lock:` / `lock-signal:` keys hold every other type, over RESP2 and RESP3 connections, directly,
inside MULTI/EXEC, from Lua (`redis.call` / `redis.pcall`, RESP2 and RESP3 scripts) and from a
function (FCALL). Background waiter connections queue on the same names so hand-offs, timeouts
and disconnects happen under the fuzz.

After every command:
- the reply parsed (RawConnection) and has a type the contract allows for that command;
- a command the contract says is malformed got an error with an allowed code, and a well-formed
  one did not get a syntax error;
- errors have a code word and a one-line message.
For a sample of commands (all of the first 2000, then 1 in 10) the state of the named lock is
read before and after (one Lua script + DEBUG DIGEST on a control connection):
- an error reply, LOCK.OWNER and LOCK.INFO left DEBUG DIGEST unchanged;
- the reply agrees with the state (WRONGTYPE, NOTACQUIRED, NOTEXPIRABLE, ALREADYACQUIRED,
  owner, RESET's 0/1) and a success had its effect (owner written, lock deleted and signalled).
The digest check is skipped when any key is within 300 ms of expiring (expiry legitimately
changes the keyspace and makes the module signal).

Every 250 steps and at the end: PING and an ECHO marker on every connection (the stream is in
sync: no extra or missing reply); at the end, every waiter got exactly one reply per request,
`INFO lock` and `LOCK.INFO` report no waiters, the server process is alive.

FUZZ_COMMANDS (default 40000) is the number of fuzz steps in total, half per seed (a step is one
command, one MULTI/EXEC of 1-5 commands, one script call, or a plain keyspace change; the
"commands" count printed is LOCK.* commands executed). FUZZ_SEED fixes the "random" seed (to
reproduce a failure). `make fuzz-live` runs FUZZ_COMMANDS=1000000. FUZZ_DEBUG=1 dumps every
key around each sampled command and prints what changed when a check fails (slow).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from harness import AUTO_ID, REDIS_SERVER, REPO, RawConnection, RespError

N_COMMANDS = int(os.environ.get("FUZZ_COMMANDS", "40000"))  # in total, over both seeds
FIXED_SEED = 1234
RANDOM_SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(1, 2**31))
MAX_MILLIS = 100 * 365 * 24 * 3600 * 1000  # the contract's out-of-range bound (100 years)
EXPIRY_MARGIN_MS = 500  # keys expiring sooner may change during a command (see LockState)
LONG_BLOCK_WAIT = 0.05  # s before a possibly-unbounded blocked ACQUIRE is CLIENT UNBLOCKed
SHORT_BLOCK_LIMIT = 5.0  # s a TIMEOUT <= 0.01 ACQUIRE may take before it is a failure

# -------------------------------------------------------------------------------------------
# the contract's syntax, as a model (independent of the module's parser)

OK, MAYBE = "ok", "maybe"


def _num_class(v: bytes, lo: int, hi: int):
    """A strict positive integer option value: OK, MAYBE, or {"ERR"}."""
    if re.fullmatch(rb"[1-9][0-9]{0,30}", v):
        return OK if lo <= int(v) <= hi else {"ERR"}
    if re.fullmatch(rb"-?0+", v) or re.fullmatch(rb"-[0-9]+", v):
        return {"ERR"}  # zero or negative
    if re.fullmatch(rb"[0-9]+", v):  # leading zeros
        return MAYBE if int(v) <= hi else {"ERR"}
    if not re.search(rb"[0-9]", v) or re.fullmatch(rb"-?[0-9]+\.[0-9]+", v):
        return {"ERR"}  # no digits at all, or a decimal where an integer is required
    return MAYBE  # "+5", " 5", "1e3", ...


def _timeout_class(v: bytes):
    """(class, ms): class OK (ms None = forever or sub-millisecond), MAYBE, or a set of codes."""
    m = re.fullmatch(rb"([0-9]+)(\.[0-9]+)?", v)
    if m:
        secs = float(v)
        if secs * 1000 > MAX_MILLIS:
            return {"ERR"}, None
        ms = secs * 1000
        return OK, (ms if ms >= 1 else None)
    if re.fullmatch(rb"-[0-9]+(\.[0-9]+)?", v):
        return ({"INVALIDTIMEOUT"} if float(v) != 0 else MAYBE), None
    if not re.search(rb"[0-9]", v):
        if v.lower() in (b"-inf", b"-infinity"):
            return {"ERR", "INVALIDTIMEOUT"}, None
        return {"ERR"}, None
    return MAYBE, None


class Model:
    """What the contract says about one command's arguments.

    status: OK (well formed), MAYBE (well formed or not: a number in a form the contract does
    not pin down), or ERR (malformed; `codes` holds the acceptable error codes).
    For ACQUIRE: id (given ID or None), ttl_ms, wait ("nowait", "short", "long").
    """

    def __init__(self, cmd: str, args: list):
        self.cmd = cmd
        self.args = args
        self.codes: set = set()
        self.maybe = False
        self.id = None
        self.ttl_ms = None
        self.wait = "long"
        self.timeout_ms = None
        self.signal_expire = None  # SIGNAL-EXPIRE ms if given and well formed
        getattr(self, "_" + cmd.split(".", 1)[1].lower().replace("-", "_"), self._unknown)()
        if self.codes and self.maybe:
            self.codes.add("ERR")  # the ambiguous value may be the (first) error found
        self.status = "ERR" if self.codes else (MAYBE if self.maybe else OK)

    def _bad(self, *codes):
        self.codes.update(codes)

    def _cls(self, c):
        if c == MAYBE:
            self.maybe = True
        elif c != OK:
            self.codes.update(c)

    def _unknown(self):
        self._bad("ERR")

    def _acquire(self):
        a = self.args
        if not a:
            return self._bad("ERR")
        rest = a[1:]
        seen_id = seen_ttl = nowait = seen_timeout = False
        timeout_cls = OK
        i = 0
        while i < len(rest):
            opt = rest[i].upper()
            i += 1
            if opt in (b"ID", b"EX", b"PX", b"TIMEOUT"):
                if i >= len(rest):
                    return self._bad("ERR")  # missing value
                val = rest[i]
                i += 1
                if opt == b"ID":
                    if seen_id:
                        return self._bad("ERR")
                    seen_id = True
                    self.id = val
                elif opt in (b"EX", b"PX"):
                    if seen_ttl:
                        return self._bad("ERR")
                    seen_ttl = True
                    unit = 1000 if opt == b"EX" else 1
                    c = _num_class(val, 1, MAX_MILLIS // unit)
                    if c == OK:
                        self.ttl_ms = int(val) * unit
                    elif c == MAYBE:
                        self.ttl_ms = -1  # unknown
                    self._cls(c)
                    if c not in (OK, MAYBE):
                        return
                else:
                    if seen_timeout:
                        return self._bad("ERR")
                    seen_timeout = True
                    timeout_cls, self.timeout_ms = _timeout_class(val)
            elif opt == b"NOWAIT":
                if nowait:
                    return self._bad("ERR")
                nowait = True
            else:
                return self._bad("ERR")  # unknown option
        if seen_id and self.id == b"":
            self._bad("ERR")
        if nowait and seen_timeout:
            self._bad("TIMEOUTNOTUSABLE")
            if timeout_cls not in (OK, MAYBE):
                self._bad(*timeout_cls)
            return
        if seen_timeout:
            self._cls(timeout_cls)
        if nowait:
            self.wait = "nowait"
        elif seen_timeout and timeout_cls == OK and self.timeout_ms is not None and self.timeout_ms <= 10:
            self.wait = "short"

    def _signal_expire_tail(self, rest):
        if not rest:
            return
        if len(rest) == 2 and rest[0].upper() == b"SIGNAL-EXPIRE":
            c = _num_class(rest[1], 1, MAX_MILLIS)
            if c == OK:
                self.signal_expire = int(rest[1])
            self._cls(c)
        else:
            self._bad("ERR")

    def _release(self):
        if len(self.args) < 2:
            return self._bad("ERR")
        self.id = self.args[1]
        if self.id == b"":
            self.maybe = True  # ERR (empty id) or NOTACQUIRED: both are fine
        self._signal_expire_tail(self.args[2:])

    def _extend(self):
        a = self.args
        if len(a) < 2:
            return self._bad("ERR")
        self.id = a[1]
        if self.id == b"":
            self.maybe = True
        if len(a) != 4 or a[2].upper() not in (b"EX", b"PX"):
            return self._bad("ERR")
        unit = 1000 if a[2].upper() == b"EX" else 1
        c = _num_class(a[3], 1, MAX_MILLIS // unit)
        if c == OK:
            self.ttl_ms = int(a[3]) * unit
        self._cls(c)

    def _owner(self):
        if len(self.args) != 1:
            self._bad("ERR")

    _info = _owner

    def _reset(self):
        if not self.args:
            return self._bad("ERR")
        self._signal_expire_tail(self.args[1:])

    def _resetall(self):
        if self.args:
            self._bad("ERR")


# state-dependent error codes each well-formed command may answer with
STATE_CODES = {
    "LOCK.ACQUIRE": {"WRONGTYPE", "ALREADYACQUIRED"},
    "LOCK.RELEASE": {"WRONGTYPE", "NOTACQUIRED"},
    "LOCK.EXTEND": {"WRONGTYPE", "NOTACQUIRED", "NOTEXPIRABLE"},
    "LOCK.OWNER": {"WRONGTYPE"},
    "LOCK.RESET": {"WRONGTYPE"},
    "LOCK.RESETALL": set(),
    "LOCK.INFO": {"WRONGTYPE"},
}
SYNTAX_CODES = {"ERR", "TIMEOUTNOTUSABLE", "INVALIDTIMEOUT"}

# -------------------------------------------------------------------------------------------
# the state of one lock, read atomically by a script (plus every key's nearest expiry)

STATE_SCRIPT = r"""
-- ARGV: margin ms, mode ('before' | 'after'), keys excluded by the 'before' call (after only)
local margin = tonumber(ARGV[1])
local before = ARGV[2] == 'before'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ks = redis.call('KEYS', '*')
-- keys past their expiry but not deleted yet are invisible to KEYS: their deletion is imminent
local hidden = redis.call('DBSIZE') - #ks
local excl, newexcl = {}, {}
for i = 3, #ARGV do excl[ARGV[i]] = true end
local function exclude(k)
  if not excl[k] then excl[k] = true; table.insert(newexcl, k) end
end
if before then
  for i = 1, #ks do
    local pe = redis.call('PEXPIRETIME', ks[i])
    if pe >= 0 and pe <= now + margin then
      -- expires during the command: it may vanish; a lock's expiry may signal or hand it off
      exclude(ks[i])
      if string.sub(ks[i], 1, 5) == 'lock:' then
        exclude('lock-signal:' .. string.sub(ks[i], 6))
      end
    end
  end
end
table.sort(ks)
local parts, freesig = {}, {}
for i = 1, #ks do
  local k = ks[i]
  if not excl[k] then
    local ty = redis.call('TYPE', k)['ok']
    local v = ''
    if ty == 'string' then v = redis.call('GET', k)
    elseif ty == 'list' then v = table.concat(redis.call('LRANGE', k, 0, -1), '\0')
    elseif ty == 'hash' then v = table.concat(redis.call('HGETALL', k), '\0')
    elseif ty == 'set' then
      local m = redis.call('SMEMBERS', k); table.sort(m); v = table.concat(m, '\0')
    elseif ty == 'zset' then v = table.concat(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'), '\0')
    elseif ty == 'stream' then
      local last = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)
      v = redis.call('XLEN', k) .. '\0' .. ((last[1] and last[1][1]) or '')
    end
    local entry = redis.sha1hex(k .. '\0' .. ty .. '\0' .. v .. '\0' ..
                                redis.call('PEXPIRETIME', k))
    if string.sub(k, 1, 12) == 'lock-signal:' and
       redis.call('EXISTS', 'lock:' .. string.sub(k, 13)) == 0 then
      -- the signal key of a free lock: kept apart (see Fuzzer.unchanged_check), with a flag
      -- saying whether it is a fresh signal (a list ["1"])
      local fresh = '0'
      if ty == 'list' and v == '1' then fresh = '1' end
      table.insert(freesig, redis.sha1hex(k) .. ':' .. fresh .. ':' .. entry)
    else
      table.insert(parts, entry)
    end
  end
end
local digest = redis.sha1hex(table.concat(parts, ''))
local res = {hidden, digest, newexcl, freesig}
if #KEYS == 2 then
  local tl = redis.call('TYPE', KEYS[1])['ok']
  local ts = redis.call('TYPE', KEYS[2])['ok']
  local v = false
  if tl == 'string' then v = redis.call('GET', KEYS[1]) end
  local sl = false
  if ts == 'list' then sl = redis.call('LRANGE', KEYS[2], 0, -1) end
  for _, x in ipairs({tl, ts, v, redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]), sl}) do
    table.insert(res, x)
  end
end
return res
"""


DUMP_SCRIPT = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)['ok']
  local v = ''
  if t == 'string' then v = redis.call('GET', k)
  elseif t == 'list' then v = table.concat(redis.call('LRANGE', k, 0, -1), ',') end
  table.insert(out, k) table.insert(out, t .. ' ' .. redis.call('PTTL', k) .. ' ' .. v)
end
return out
"""
FUZZ_DEBUG = bool(os.environ.get("FUZZ_DEBUG"))


class LockState:
    """The keyspace around one command: `digest` is DEBUG DIGEST, `stable` a digest of every key
    that does not expire within EXPIRY_MARGIN_MS (and of the signal keys of locks that do not),
    `excluded` those left out; `hidden` counts expired keys not yet deleted. With a name: the
    types, values and PTTLs of its lock and signal keys."""

    def __init__(self, reply, digest):
        self.digest = digest
        self.hidden, self.stable, self.excluded = reply[0], reply[1], reply[2]
        # sha1(key) -> (fresh signal?, entry hash) for the signal keys of free locks
        self.free_signals = {e.split(b":")[0]: tuple(e.split(b":")[1:]) for e in reply[3]}
        self.named = len(reply) > 4
        if not self.named:
            return
        self.tl, self.ts = reply[4], reply[5]
        self.owner = reply[6]
        self.pttl, self.sig_pttl = reply[7], reply[8]
        self.signal = reply[9]

    @property
    def stable_lock(self):
        """Neither key of the named lock expires during the command, and no expired key hides."""
        return self.named and self.hidden == 0 and all(
            t in (-1, -2) or t > EXPIRY_MARGIN_MS for t in (self.pttl, self.sig_pttl))

    @property
    def wrongtype(self):
        return self.tl not in (b"none", b"string") or self.ts not in (b"none", b"list")

    def __repr__(self):
        return (f"lock:{self.tl.decode()}={_short(self.owner)} pttl={self.pttl} "
                f"signal:{self.ts.decode()}={_short(self.signal)} pttl={self.sig_pttl}")


# -------------------------------------------------------------------------------------------
# helpers


def _short(x, n=60):
    r = repr(x)
    return r if len(r) <= n else r[:n] + f"...({len(r)} chars)"


def _show_cmd(args):
    return " ".join(_short(a if isinstance(a, bytes) else str(a).encode(), 40) for a in args)


class FuzzFailure(AssertionError):
    pass


def _server_kind(conn) -> tuple:
    info = conn.call("INFO", "server").decode()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    name = fields.get("server_name", "redis").strip()
    version = fields.get("valkey_version" if name == "valkey" else "redis_version", "0").strip()
    return name, tuple(int(x) for x in version.split(".")[:2])


def _b(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def _is_error(reply) -> bool:
    return isinstance(reply, RespError)


class Waiter:
    """A background connection that queues LOCK.ACQUIREs on the fuzzed names."""

    def __init__(self, fz, index, protocol):
        self.fz = fz
        self.index = index
        self.protocol = protocol
        self.seq = 0
        self.connect()

    def connect(self):
        self.conn = self.fz.server.raw(self.protocol)
        self.client_id = self.conn.call("CLIENT", "ID")
        self.pending = None  # (name, id, sent_at, timeout_s or None)

    def launch(self, name):
        rng = self.fz.wrng
        self.seq += 1
        wid = b"w%d-%d" % (self.index, self.seq)
        timeout = rng.choice([b"0.05", b"0.2", b"1", b"0"]) if rng.random() < 0.9 else b"3"
        args = ["LOCK.ACQUIRE", name, "ID", wid, "PX", rng.choice([1000, 3000, 60000]), "TIMEOUT", timeout]
        self.conn.send(*args)
        self.fz.history.append(f"    waiter {self.index}: {_show_cmd(args)}")
        self.pending = (name, wid, time.monotonic(), float(timeout) or None)
        self.fz.stats["waits"] += 1
        self.wait_processed()

    def wait_processed(self):
        """Until the server has run the ACQUIRE (it replied, or the client is blocked): sent on
        another connection, it could otherwise run inside the next command's before/after
        window and take a free lock there (on a slow or loaded server)."""
        deadline = time.monotonic() + 10
        while not self.conn.pending(0):
            info = self.fz.ctl.call("CLIENT", "LIST", "ID", self.client_id).decode()
            flags = re.search(r" flags=(\S*)", info)
            if flags and "b" in flags.group(1):
                return
            if time.monotonic() > deadline:
                self.fz.fail(f"waiter {self.index}: its LOCK.ACQUIRE neither replied nor blocked "
                             f"within 10 s ({info.strip()})")

    def poll(self):
        """Read the reply if it arrived; returns True if the waiter is idle afterwards."""
        if self.pending is None:
            return True
        name, wid, sent, timeout = self.pending
        if not self.conn.pending(0):
            if timeout is not None and time.monotonic() - sent > timeout + SHORT_BLOCK_LIMIT:
                self.fz.fail(f"waiter {wid!r} on {_short(name)}: no reply {time.monotonic() - sent:.1f}s "
                             f"after LOCK.ACQUIRE ... TIMEOUT {timeout}")
            return False
        reply = self.conn.read(5)
        self.fz.history.append(f"    waiter {self.index} {wid!r} -> {_short(reply)} "
                               f"after {time.monotonic() - sent:.3f}s")
        self.fz.check_reply_shape("LOCK.ACQUIRE", reply, self.conn.last_type, self.protocol)
        self.pending = None
        if _is_error(reply):
            if reply.code not in ("WRONGTYPE", "UNBLOCKED"):
                self.fz.fail(f"waiter {wid!r} on {_short(name)}: unexpected error {reply}")
            self.fz.stats["waiter_errors"] += 1
        elif reply is None:
            self.fz.stats["waiter_nulls"] += 1
        else:
            if reply != wid:
                self.fz.fail(f"waiter {wid!r} on {_short(name)} was granted with id {_short(reply)}")
            self.fz.stats["waiter_grants"] += 1
            if self.fz.wrng.random() < 0.5:
                r = self.conn.call("LOCK.RELEASE", name, wid)
                self.fz.history.append(f"    waiter {self.index} release -> {r!r}")
                if r != b"OK" and not (_is_error(r) and r.code in ("NOTACQUIRED", "WRONGTYPE")):
                    self.fz.fail(f"waiter release of {_short(name)}: {r!r}")
        if self.conn.pending(0):
            self.fz.fail(f"waiter {wid!r}: a second reply after {reply!r}")
        return True

    def disconnect(self):
        """Drop the connection while (maybe) waiting, and wait until the server freed it."""
        self.conn.close()
        self.fz.stats["waiter_disconnects"] += 1
        deadline = time.monotonic() + 10
        while self.fz.ctl.call("CLIENT", "LIST", "ID", self.client_id):
            if time.monotonic() > deadline:
                self.fz.fail(f"client {self.client_id} still listed 10 s after its socket closed")
            time.sleep(0.002)
        self.connect()

    def finish(self):
        """Unblock an outstanding request; check exactly one reply arrived."""
        if self.pending is not None and not self.poll():
            self.fz.ctl.call("CLIENT", "UNBLOCK", self.client_id)
            deadline = time.monotonic() + 5
            while not self.poll():
                if time.monotonic() > deadline:
                    self.fz.fail(f"waiter {self.pending!r}: no reply after CLIENT UNBLOCK")
                time.sleep(0.002)
        got = self.conn.call("ECHO", b"sync-w")
        if got != b"sync-w":
            self.fz.fail(f"waiter {self.index}: stray reply {got!r}")


# -------------------------------------------------------------------------------------------
# the fuzzer


TYPES = ["string", "list", "hash", "set", "zset", "stream"]


class Fuzzer:
    def __init__(self, server, seed: int, n: int):
        self.server = server
        self.seed = seed
        self.n = n
        self.rng = random.Random(seed)
        self.sample_rng = random.Random(seed ^ 0x5A5A)
        # the waiters' choices depend on reply timing: their own generator keeps the main
        # command stream a function of the seed alone
        self.wrng = random.Random(seed ^ 0x7777)
        self.ctl = server.raw(2)
        self.kind = _server_kind(self.ctl)
        self.is_redis70 = self.kind[0] == "redis" and self.kind[1] < (7, 2)
        self.conns = {2: server.raw(2), 3: server.raw(3)}
        self.conn_ids = {p: c.call("CLIENT", "ID") for p, c in self.conns.items()}
        self.history = deque(maxlen=25)
        self.stats = {k: 0 for k in (
            "commands", "direct", "multi", "lua", "fcall", "foreign", "errors", "ok_replies",
            "digest_checks", "digest_skipped", "digest_expiry_explained", "digest_deferred_signal_70", "oracle_checks", "unblocks", "unblock_errors",
            "waits", "waiter_grants", "waiter_nulls", "waiter_errors", "waiter_disconnects",
            "acquired", "dropped_unblock_replies")}
        self.step = 0
        self.recent_ids = deque(maxlen=30)
        rng = self.rng
        self.core = [b"a", b"b", b"c", b"", b"{t}x", b"\x00\xff\r\n", b"name with spaces",
                     b"*", b"lock:", b"x" * 300]
        self.typed = []
        for t in TYPES:
            self.typed += [b"T-" + t.encode(), b"S-" + t.encode(), b"B-" + t.encode(),
                           b"H-" + t.encode()]
        self.fresh = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
                      for _ in range(150)]
        self.long_names = [b"L" * 70000, bytes(rng.randrange(256) for _ in range(5000))]
        self.long_ids = [b"I" * 70000, b"\x00" * 1000]
        self.names = self.core + self.typed + self.fresh[:20]
        self.waiters = [Waiter(self, i, p) for i, p in enumerate([2, 3, 2])]
        self.fcall = False

    # -- setup ------------------------------------------------------------------------------

    def make_key(self, key: bytes, t: str, ttl_ms=None):
        c = self.ctl
        c.call("DEL", key)
        if t == "string":
            c.call("SET", key, b"holder")
        elif t == "list":
            c.call("RPUSH", key, b"1", b"2")
        elif t == "hash":
            c.call("HSET", key, b"f", b"v")
        elif t == "set":
            c.call("SADD", key, b"m")
        elif t == "zset":
            c.call("ZADD", key, 1, b"m")
        elif t == "stream":
            c.call("XADD", key, "*", b"f", b"v")
        if ttl_ms:
            c.call("PEXPIRE", key, ttl_ms)

    def populate(self):
        for t in TYPES:
            tb = t.encode()
            self.make_key(b"lock:T-" + tb, t)  # lock key of type t
            self.make_key(b"lock:S-" + tb, "string")  # held lock, signal of type t
            self.make_key(b"lock-signal:S-" + tb, t)
            self.make_key(b"lock:B-" + tb, t)  # both
            self.make_key(b"lock-signal:B-" + tb, t)
            self.make_key(b"lock-signal:H-" + tb, t)  # free lock, signal of type t
        self.recent_ids.append(b"holder")
        lib = ("#!lua name=lockfuzz\n"
               "redis.register_function('lockfuzz', function(keys, args) "
               "return redis.call(unpack(args)) end)")
        r = self.ctl.call("FUNCTION", "LOAD", "REPLACE", lib)
        self.fcall = not _is_error(r)

    # -- generation -------------------------------------------------------------------------

    def gen_name(self):
        r = self.rng.random()
        if r < 0.45:
            return self.rng.choice(self.core)
        if r < 0.75:
            return self.rng.choice(self.typed)
        if r < 0.97:
            return self.rng.choice(self.fresh)
        if r < 0.995:
            return self.rng.choice(self.long_names)
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(0, 64)))

    def gen_id(self):
        rng = self.rng
        r = rng.random()
        if r < 0.45 and self.recent_ids:
            return rng.choice(self.recent_ids)
        if r < 0.65:
            return rng.choice([b"id1", b"id2", b"holder", b"w0-1", b"w1-1"])
        if r < 0.72:
            return b""
        if r < 0.82:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        if r < 0.84:
            return rng.choice(self.long_ids)
        return rng.choice([b"NOWAIT", b"PX", b"ID", b"TIMEOUT", b"-1", b"0", b"\r\n", b" "])

    GARBAGE_NUMS = [b"0", b"-1", b"-0", b"00", b"007", b"1.5", b"0.5", b"-0.5", b"+1", b" 1", b"1 ",
                    b"1e3", b"1E-3", b".5", b"5.", b"0x10", b"", b"abc", b"\x00", b"inf", b"-inf",
                    b"nan", b"NaN", b"infinity", b"9223372036854775807", b"9223372036854775808",
                    b"-9223372036854775808", b"18446744073709551615", b"18446744073709551616",
                    b"9" * 400, b"-" + b"9" * 40, b"3153600000000", b"3153600000001",
                    b"3153600000", b"3153600001", b"1e308", b"1e-300", b"4294967296",
                    b"2147483648", b"0.0001", b"1\x00", b"\xff\xfe", b"1,5", b"1_000"]

    def gen_ttl_value(self, unit):
        rng = self.rng
        r = rng.random()
        if r < 0.65:
            if unit == b"EX":
                return str(rng.choice([1, 2, 5, 60, 3600, 100000])).encode()
            return str(rng.choice([1, 20, 400, 1000, 5000, 60000, 3600000])).encode()
        return rng.choice(self.GARBAGE_NUMS)

    def gen_timeout_value(self):
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice([b"0.001", b"0.002", b"0.005", b"0.01", b"0.003"])
        return rng.choice(self.GARBAGE_NUMS + [b"0", b"0.0", b"100", b"-1", b"-0.001", b"0.02"])

    def opt_token(self, tok: bytes):
        r = self.rng.random()
        if r < 0.8:
            return tok
        if r < 0.9:
            return tok.lower()
        return bytes(c ^ 0x20 if self.rng.random() < 0.5 and chr(c).isalpha() else c for c in tok)

    def gen_acquire_args(self):
        rng = self.rng
        args = [self.gen_name()]
        n = rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5])
        for _ in range(n):
            r = rng.random()
            if r < 0.25:
                args += [self.opt_token(b"ID"), self.gen_id()]
            elif r < 0.45:
                unit = rng.choice([b"EX", b"PX", b"PX"])
                args += [self.opt_token(unit), self.gen_ttl_value(unit)]
            elif r < 0.65:
                args += [self.opt_token(b"NOWAIT")]
            elif r < 0.85:
                args += [self.opt_token(b"TIMEOUT"), self.gen_timeout_value()]
            elif r < 0.93:
                args += [rng.choice([b"ID", b"EX", b"PX", b"TIMEOUT"])]  # maybe missing value
            else:
                args += [rng.choice([b"XX", b"NX", b"KEEPTTL", b"", b"\x00", b"SIGNAL-EXPIRE",
                                     b"NOWAIT\x00", b"IDX", b"TIMEOUTS", b"GET"])]
        return args

    def gen_signal_tail(self):
        rng = self.rng
        r = rng.random()
        if r < 0.6:
            return []
        if r < 0.85:
            v = str(rng.choice([1, 100, 1000, 5000])).encode() if rng.random() < 0.6 else \
                rng.choice(self.GARBAGE_NUMS)
            return [self.opt_token(b"SIGNAL-EXPIRE"), v]
        return rng.choice([[b"SIGNAL-EXPIRE"], [b"SIGNAL-EXPIRE", b"1", b"x"], [b"PX", b"10"],
                           [b"SIGNAL-EXPIRE", b"1", b"SIGNAL-EXPIRE", b"2"], [b""]])

    def gen_command(self):
        rng = self.rng
        r = rng.random()
        if r < 0.36:
            cmd, args = "LOCK.ACQUIRE", self.gen_acquire_args()
        elif r < 0.56:
            cmd, args = "LOCK.RELEASE", [self.gen_name(), self.gen_id()] + self.gen_signal_tail()
        elif r < 0.68:
            cmd = "LOCK.EXTEND"
            unit = rng.choice([b"EX", b"PX"])
            args = [self.gen_name(), self.gen_id(), self.opt_token(unit), self.gen_ttl_value(unit)]
            if rng.random() < 0.1:
                args = args[: rng.randrange(len(args))] + (
                    [rng.choice([b"EX", b"1", b"NOWAIT"])] if rng.random() < 0.5 else [])
        elif r < 0.77:
            cmd, args = "LOCK.OWNER", [self.gen_name()]
        elif r < 0.86:
            cmd, args = "LOCK.RESET", [self.gen_name()] + self.gen_signal_tail()
        elif r < 0.87:
            cmd, args = "LOCK.RESETALL", []
        elif r < 0.98:
            cmd, args = "LOCK.INFO", [self.gen_name()]
        else:
            cmd, args = rng.choice(["LOCK.FOO", "LOCK.", "LOCK.ACQUIREX"]), [self.gen_name()]
        if rng.random() < 0.04 and args:  # arity fuzz
            args = args[: rng.randrange(len(args))] if rng.random() < 0.5 else \
                args + [rng.choice([b"x", b"", b"NOWAIT", b"1"])]
        return cmd, args

    def wire_name(self, cmd: str) -> str:
        return cmd if self.rng.random() < 0.9 else "".join(
            ch.lower() if self.rng.random() < 0.5 else ch for ch in cmd)

    # -- checks -----------------------------------------------------------------------------

    def fail(self, msg):
        hist = "\n".join(self.history)
        if FUZZ_DEBUG and getattr(self, "dumps", None) and self.dumps[0] is not None:
            old, new = self.dumps
            diff = {_short(k): (old.get(k), new.get(k)) for k in set(old) | set(new)
                    if old.get(k) != new.get(k)}
            msg += f"\nkeys changed between the last two state reads: {diff!r}"
        log = self.server.crash_excerpt() if not self.server.alive() else self.server.log_tail(8)
        raise FuzzFailure(
            f"[seed {self.seed}, step {self.step}, {self.kind[0]} {self.kind[1]}] {msg}\n"
            f"server alive: {self.server.alive()}\nlast commands:\n{hist}\n"
            f"--- server log ---\n{log}")

    def check_error_text(self, e: RespError):
        text = str(e)
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", e.code) or "\n" in text or "\r" in text:
            self.fail(f"malformed error reply {text!r}")
        if len(text) > 4096:
            self.fail(f"error reply of {len(text)} bytes (echoes a huge argument?): {text[:200]!r}")

    def check_reply_shape(self, cmd, reply, rtype, protocol, in_script=False):
        """The reply's type is one the contract allows for `cmd` (errors are checked elsewhere)."""
        if _is_error(reply):
            self.check_error_text(reply)
            return
        null_types = (b"$", b"*") if protocol == 2 else (b"_",)
        if in_script:
            null_types = (b"$", b"_", b"*")
        ok = True
        if cmd == "LOCK.ACQUIRE" or cmd == "LOCK.OWNER":
            ok = (reply is None and rtype in null_types) or (in_script and reply is False) or (isinstance(reply, bytes) and rtype == b"$")
        elif cmd in ("LOCK.RELEASE", "LOCK.EXTEND"):
            ok = reply == b"OK" and rtype == b"+"
        elif cmd == "LOCK.RESET":
            ok = reply in (0, 1) and rtype == b":"
        elif cmd == "LOCK.RESETALL":
            ok = isinstance(reply, int) and reply >= 0 and rtype == b":"
        elif cmd == "LOCK.INFO":
            d = self.info_dict(reply)
            if in_script and d is not None:
                d = {b"owner": None, **d}  # a Lua table cannot hold a nil: owner goes missing
            ok = d is not None and {b"owner", b"ttl-ms", b"waiters"} <= set(d) and \
                isinstance(d[b"ttl-ms"], int) and isinstance(d[b"waiters"], int) and \
                d[b"waiters"] >= 0 and (d[b"owner"] is None or isinstance(d[b"owner"], bytes))
            if not in_script:
                ok = ok and rtype == (b"*" if protocol == 2 else b"%")
        else:
            ok = False  # unknown commands must error
        if not ok:
            self.fail(f"{cmd}: reply {_short(reply, 200)} (type {rtype!r}, RESP{protocol}) "
                      f"is not one the contract allows")

    @staticmethod
    def info_dict(reply):
        if isinstance(reply, dict):
            return reply
        if isinstance(reply, list) and len(reply) % 2 == 0:
            return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
        return None

    def check_against_model(self, cmd, model, reply, *, unblocked=None, in_script=False):
        """Syntax-level agreement between the reply and the contract."""
        if _is_error(reply):
            code = reply.code
            allowed = set(model.codes)
            if model.status != "ERR":
                allowed |= STATE_CODES.get(cmd, set()) | {"OOM"}
                if model.status == MAYBE:
                    allowed |= SYNTAX_CODES | {"NOTACQUIRED"}
            if unblocked == "ERROR":
                allowed.add("UNBLOCKED")
            if cmd == "LOCK.ACQUIRE" and model.id is None and "ALREADYACQUIRED" in allowed:
                allowed.discard("ALREADYACQUIRED")
            if code not in allowed:
                self.fail(f"{cmd}: error {str(reply)!r}; the contract allows {sorted(allowed)} "
                          f"for these arguments (model: {model.status})")
        elif model.status == "ERR":
            self.fail(f"{cmd}: malformed arguments (expected {sorted(model.codes)}) were accepted "
                      f"with reply {_short(reply, 200)}")
        elif cmd == "LOCK.ACQUIRE" and isinstance(reply, bytes):
            if model.id is not None and reply != model.id and model.status == OK:
                self.fail(f"LOCK.ACQUIRE with ID {_short(model.id)} replied {_short(reply)}")
            if model.id is None and not AUTO_ID.match(reply):
                self.fail(f"LOCK.ACQUIRE without ID replied {_short(reply)} (not a 24-char id)")
            self.recent_ids.append(reply)
            self.stats["acquired"] += 1

    def read_state(self, name, before=None):
        mode = "before" if before is None else "after"
        excluded = [] if before is None else before.excluded
        keys = [] if name is None else [b"lock:" + name, b"lock-signal:" + name]
        self.ctl.send("EVAL", STATE_SCRIPT, len(keys), *keys, EXPIRY_MARGIN_MS, mode, *excluded)
        self.ctl.send("DEBUG", "DIGEST")
        st = self.ctl.read()
        digest = self.ctl.read()
        if _is_error(st) or _is_error(digest):
            self.fail(f"state read failed: {st!r} {digest!r}")
        if FUZZ_DEBUG:  # keep every key, to show what changed when a digest differs
            keys = self.ctl.call("KEYS", "*")
            vals = self.ctl.call("DEBUG", "DIGEST-VALUE", *keys) if keys else []
            d = {}
            for k, v in zip(keys, vals):
                d[k] = (self.ctl.call("TYPE", k), v, self.ctl.call("PEXPIRETIME", k))
            self.dumps = (getattr(self, "dumps", (None, None))[1], d)
        return LockState(st, digest)

    def unchanged_check(self, before, after, what, reply):
        """An error (or a read) left the keyspace as it was, up to keys that expired meanwhile."""
        if after.digest == before.digest:
            self.stats["digest_checks"] += 1
            return
        if before.hidden or after.hidden:
            self.stats["digest_skipped"] += 1  # an expired key was deleted meanwhile
            return
        if after.stable == before.stable:
            if after.free_signals == before.free_signals:
                self.stats["digest_checks"] += 1
                self.stats["digest_expiry_explained"] += 1
                return
            b, a = before.free_signals, after.free_signals
            changed = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
            if all(k in a and a[k][0] == b"1" for k in changed):
                # A lock that expired (or was deleted) just before or during the command gets
                # its signal from a 0 ms timer one event-loop turn later on Redis 7.0, or, when
                # the command itself expired it lazily (a read inside MULTI/EXEC, a script), from
                # the post-notification job at the end of that command on Redis 7.2+/Valkey.
                # Either lands inside the window. Only signal keys of free locks changed, each
                # into a fresh signal (a wrong-type one is replaced).
                self.stats["digest_checks"] += 1
                self.stats["digest_deferred_signal_70"] += 1
                return
            self.fail(f"{what} replied {_short(reply, 150)} but the signal keys of "
                      f"{len(changed)} free locks changed ({sum(k not in a for k in changed)} gone)")
        self.fail(f"{what} replied {_short(reply, 150)} but the keyspace changed "
                  f"(DEBUG DIGEST {before.digest!r} -> {after.digest!r}, and keys that were not about "
                  f"to expire changed too; {len(before.excluded)} keys near expiry excluded)")

    def waiters_on(self, name):
        return any(w.pending is not None and w.pending[0] == name for w in self.waiters)

    def oracle(self, cmd, model, name, before, after, reply):
        """The reply and its effect agree with the lock's state before the command."""
        if model.status != OK or not before.stable_lock:
            return
        self.stats["oracle_checks"] += 1
        err = reply.code if _is_error(reply) else None
        waiting = self.waiters_on(name)

        def expect(cond, what):
            if not cond:
                self.fail(f"{cmd} {_short(name)}: {what}; reply {_short(reply, 120)}; "
                          f"before: {before}; after: {after}")

        if cmd == "LOCK.OWNER":
            if before.tl not in (b"none", b"string"):
                expect(err == "WRONGTYPE", "WRONGTYPE expected")
            elif err is None:
                expect(reply == before.owner, "reply is not the owner")
            else:
                expect(err == "WRONGTYPE" and before.wrongtype, "unexpected error")
        elif cmd == "LOCK.INFO":
            if before.tl not in (b"none", b"string"):
                expect(err == "WRONGTYPE", "WRONGTYPE expected")
            elif err is None:
                d = self.info_dict(reply)
                expect(d[b"owner"] == before.owner, "owner differs")
                if before.owner is None:
                    expect(d[b"ttl-ms"] == -2, "ttl-ms of a free lock must be -2")
                elif before.pttl == -1:
                    expect(d[b"ttl-ms"] == -1, "ttl-ms of a lock without expiry must be -1")
                else:
                    expect(0 <= d[b"ttl-ms"] <= before.pttl + 1, "ttl-ms out of range")
                if not waiting:
                    expect(d[b"waiters"] == 0, "waiters reported with nobody waiting")
            else:
                expect(err == "WRONGTYPE" and before.wrongtype, "unexpected error")
        elif cmd == "LOCK.RELEASE":
            if before.wrongtype:
                return expect(err == "WRONGTYPE", "WRONGTYPE expected (both keys are checked)")
            if before.owner != model.id:
                return expect(err == "NOTACQUIRED", "NOTACQUIRED expected")
            expect(err is None, "the owner's release failed")
            if not waiting and (model.signal_expire or 1000) >= 1000:
                expect(after.tl == b"none", "lock key still present after release")
                expect(after.signal == [b"1"], "signal list is not [1] after release")
        elif cmd == "LOCK.EXTEND":
            if before.tl not in (b"none", b"string"):
                return expect(err == "WRONGTYPE", "WRONGTYPE expected")
            if err == "WRONGTYPE":
                return expect(before.wrongtype, "WRONGTYPE without a wrong type")
            if before.owner != model.id:
                return expect(err == "NOTACQUIRED", "NOTACQUIRED expected")
            if before.pttl == -1:
                return expect(err == "NOTEXPIRABLE", "NOTEXPIRABLE expected")
            expect(err is None, "the owner's extend failed")
            if model.ttl_ms >= 1000:
                expect(after.owner == model.id and 0 < after.pttl <= model.ttl_ms and
                   after.pttl > model.ttl_ms - 2000, "TTL not set by EXTEND")
        elif cmd == "LOCK.RESET":
            if before.wrongtype:
                return expect(err == "WRONGTYPE", "WRONGTYPE expected (both keys are checked)")
            expect(err is None, "unexpected error")
            expect(reply == (1 if before.owner is not None else 0), "RESET reply != lock existed")
            if not waiting and (model.signal_expire or 1000) >= 1000:
                expect(after.tl == b"none" and after.signal == [b"1"], "RESET did not free and signal")
        elif cmd == "LOCK.ACQUIRE":
            if before.wrongtype:
                return expect(err == "WRONGTYPE", "WRONGTYPE expected")
            if before.owner is not None and model.id is not None and before.owner == model.id:
                return expect(err == "ALREADYACQUIRED", "ALREADYACQUIRED expected")
            if before.owner is not None:
                return expect(reply is None and err is None, "a busy lock must give a null reply")
            if waiting:
                return
            expect(err is None and reply is not None, "a free lock was not acquired")
            if model.ttl_ms is not None and model.ttl_ms < 1000:
                return
            expect(after.owner == reply, "the lock key does not hold the returned id")
            if model.ttl_ms is None:
                expect(after.pttl == -1, "a lock without EX/PX got a TTL")
            elif model.ttl_ms > 0:
                expect(0 < after.pttl <= model.ttl_ms, "wrong TTL on the acquired lock")

    # -- execution --------------------------------------------------------------------------

    def run_direct(self):
        rng = self.rng
        protocol = rng.choice([2, 3])
        conn = self.conns[protocol]
        cmd, args = self.gen_command()
        model = Model(cmd, args)
        if cmd == "LOCK.ACQUIRE" and model.status != "ERR" and model.wait == "long" \
                and rng.random() < 0.9:
            # keep unbounded waits rare: turn them into short ones
            if any(a.upper() == b"TIMEOUT" for a in args[1:]):
                args = self._fix_timeout(args)
            else:
                args = args + [b"NOWAIT"]
            model = Model(cmd, args)
        name = args[0] if args and cmd != "LOCK.RESETALL" else None
        sample = self.step < 2000 or self.sample_rng.random() < 0.1
        before = None
        if sample:
            before = self.read_state(name)
        wire = [self.wire_name(cmd), *args]
        self.history.append(f"#{self.step} RESP{protocol}: {_show_cmd(wire)}")
        conn.send(*wire)
        unblocked = None
        if cmd == "LOCK.ACQUIRE" and model.status != "ERR" and model.wait != "nowait":
            limit = SHORT_BLOCK_LIMIT if model.wait == "short" else LONG_BLOCK_WAIT
            if not conn.pending(limit):
                if model.wait == "short":
                    self.fail(f"LOCK.ACQUIRE with TIMEOUT <= 10 ms still blocked after {limit}s")
                unblocked = "ERROR" if self.wrng.random() < 0.3 else "TIMEOUT"
                n = self.ctl.call("CLIENT", "UNBLOCK", self.conn_ids[protocol], unblocked)
                self.stats["unblocks"] += 1
                self.history.append(f"    CLIENT UNBLOCK {unblocked} -> {n!r}")
                if not conn.pending(5):
                    if self.is_redis70 and n == 1:
                        # documented Redis 7.0 limit: an unblock in the same event-loop turn as
                        # a grant loses the reply; the grant must be taken back
                        self.stats["dropped_unblock_replies"] += 1
                        self.reconnect(protocol)
                        return
                    self.fail(f"no reply 5 s after CLIENT UNBLOCK {unblocked} (returned {n!r})")
        reply = conn.read(10)
        rtype = conn.last_type
        self.history.append(f"    -> {_short(reply, 100)}")
        self.stats["direct"] += 1
        self.account(reply)
        self.check_reply_shape(cmd, reply, rtype, protocol)
        self.check_against_model(cmd, model, reply, unblocked=unblocked)
        if unblocked == "ERROR" and _is_error(reply) and reply.code == "UNBLOCKED":
            self.stats["unblock_errors"] += 1
        if sample:
            self.after_sample(cmd, model, name, before, reply, unblocked)

    @staticmethod
    def _fix_timeout(args):
        out = [args[0]]
        i = 1
        while i < len(args):
            a = args[i]
            out.append(a)
            if a.upper() == b"TIMEOUT" and i + 1 < len(args):
                out.append(b"0.005")
                i += 2
                continue
            i += 1
        return out

    def after_sample(self, cmd, model, name, before, reply, unblocked=None):
        after = self.read_state(name, before)
        readonly = cmd in ("LOCK.OWNER", "LOCK.INFO")
        if (_is_error(reply) or readonly) and not unblocked:
            self.unchanged_check(before, after, cmd, reply)
        if name is not None and not unblocked:
            self.oracle(cmd, model, name, before, after, reply)

    def reconnect(self, protocol):
        self.conns[protocol].close()
        self.conns[protocol] = self.server.raw(protocol)
        self.conn_ids[protocol] = self.conns[protocol].call("CLIENT", "ID")

    def account(self, reply):
        self.stats["commands"] += 1
        if _is_error(reply):
            self.stats["errors"] += 1
        else:
            self.stats["ok_replies"] += 1

    def run_multi(self):
        rng = self.rng
        protocol = rng.choice([2, 3])
        conn = self.conns[protocol]
        cmds = [self.gen_command() for _ in range(rng.randrange(1, 6))]
        sample = self.step < 2000 or self.sample_rng.random() < 0.1
        if sample:
            before = self.read_state(None)
        self.history.append(f"#{self.step} RESP{protocol} MULTI: " +
                            " | ".join(_show_cmd([c, *a]) for c, a in cmds))
        conn.send("MULTI")
        for c, a in cmds:
            conn.send(self.wire_name(c), *a)
        conn.send("EXEC")
        r = conn.read(10)
        if r != b"OK":
            self.fail(f"MULTI -> {r!r}")
        queued = []
        for c, a in cmds:
            q = conn.read(10)
            if _is_error(q):
                self.check_error_text(q)
                if q.code != "ERR" or Model(c, a).status == OK:
                    self.fail(f"{c} refused at queue time with {q}; model says {Model(c, a).status}")
            elif q != b"QUEUED":
                self.fail(f"{c} in MULTI: {q!r} instead of QUEUED")
            queued.append(q)
        replies = conn.read(10)
        rtype = conn.last_type
        self.history.append(f"    -> {_short(replies, 200)}")
        self.stats["multi"] += 1
        if any(_is_error(q) for q in queued):
            if not (_is_error(replies) and replies.code == "EXECABORT"):
                self.fail(f"EXEC after a queue-time error: {replies!r}")
            all_errors = True
            self.account(replies)
        else:
            if not isinstance(replies, list) or len(replies) != len(cmds) or rtype != b"*":
                self.fail(f"EXEC reply {_short(replies, 200)} for {len(cmds)} commands")
            all_errors = True
            # RawConnection only keeps the top-level type; reply types inside EXEC are checked
            # loosely (in_script) and by value
            for (c, a), rep in zip(cmds, replies):
                self.account(rep)
                self.check_reply_shape(c, rep, self._inner_type(rep, protocol), protocol, in_script=True)
                self.check_against_model(c, Model(c, a), rep)
                all_errors = all_errors and _is_error(rep)
        if sample:
            self.digest_check(before, all_errors, "MULTI/EXEC", replies)

    @staticmethod
    def _inner_type(rep, protocol):
        if rep is None:
            return b"$" if protocol == 2 else b"_"
        if isinstance(rep, bytes):
            return b"+" if rep == b"OK" else b"$"
        if isinstance(rep, int):
            return b":"
        if isinstance(rep, dict):
            return b"%"
        return b"*"

    def digest_check(self, before, unchanged_expected, what, reply):
        if unchanged_expected:
            self.unchanged_check(before, self.read_state(None, before), what, reply)

    def run_script(self):
        rng = self.rng
        protocol = rng.choice([2, 3])
        conn = self.conns[protocol]
        cmd, args = self.gen_command()
        model = Model(cmd, args)
        r = rng.random()
        if r < 0.4:
            kind, wire = "call", ["EVAL", "return redis.call(unpack(ARGV))", 0]
        elif r < 0.65:
            kind, wire = "pcall", ["EVAL", "return redis.pcall(unpack(ARGV))", 0]
        elif r < 0.85:
            kind, wire = "resp3", ["EVAL", "redis.setresp(3) return redis.call(unpack(ARGV))", 0]
        elif self.fcall:
            kind, wire = "fcall", ["FCALL", "lockfuzz", 0]
        else:
            kind, wire = "call", ["EVAL", "return redis.call(unpack(ARGV))", 0]
        wire = wire + [self.wire_name(cmd), *args]
        sample = self.step < 2000 or self.sample_rng.random() < 0.1
        if sample:
            before = self.read_state(None)
        self.history.append(f"#{self.step} RESP{protocol} {kind}: {_show_cmd([cmd, *args])}")
        reply = conn.call(*wire)
        self.history.append(f"    -> {_short(reply, 100)}")
        self.stats["fcall" if kind == "fcall" else "lua"] += 1
        self.account(reply)
        self.check_reply_shape(cmd, reply, conn.last_type, protocol, in_script=True)
        self.check_against_model(cmd, model, reply, in_script=True)
        if sample:
            self.digest_check(before, _is_error(reply) or cmd in ("LOCK.OWNER", "LOCK.INFO"),
                              f"script {cmd}", reply)

    def run_foreign(self):
        """Plain commands on the lock keys: type clashes, python-style acquire, DEL, expiry."""
        rng = self.rng
        name = rng.choice(self.core + self.typed + self.fresh[:20])
        key = (b"lock:" if rng.random() < 0.6 else b"lock-signal:") + name
        r = rng.random()
        if r < 0.5:
            t = rng.choice(TYPES)
            self.make_key(key, t, ttl_ms=rng.choice([None, None, 2000, 50]))
            what = f"make {t}"
        elif r < 0.7:
            self.ctl.call("SET", b"lock:" + name, b"py-" + name[:8], "NX", "PX", rng.choice([500, 5000]))
            what = "SET NX PX"
        elif r < 0.85:
            self.ctl.call("DEL", key)
            what = "DEL"
        elif r < 0.97:
            self.ctl.call("PEXPIRE", key, rng.choice([1, 30, 1000]))
            what = "PEXPIRE"
        else:
            self.ctl.call("FLUSHALL")
            self.populate()
            what = "FLUSHALL"
        self.ctl.call("PING")
        self.stats["foreign"] += 1
        self.history.append(f"#{self.step} foreign {what} {_short(key)}")

    def poll_waiters(self):
        for w in self.waiters:
            idle = w.poll()
            r = self.wrng.random()
            if not idle and r < 0.03:
                w.disconnect()
            elif idle and r < 0.3:
                w.launch(self.wrng.choice(self.core[:5] + self.typed[:8]))

    def sync_check(self):
        for p, conn in self.conns.items():
            marker = b"sync-%d" % self.step
            got = conn.call("ECHO", marker)
            if got != marker:
                self.fail(f"RESP{p} connection out of sync: ECHO got {_short(got, 200)}")
        if self.ctl.call("PING") != b"PONG":
            self.fail("PING failed")

    def run(self):
        self.populate()
        t0 = time.monotonic()
        for self.step in range(self.n):
            try:
                r = self.rng.random()
                if r < 0.74:
                    self.run_direct()
                elif r < 0.84:
                    self.run_multi()
                elif r < 0.96:
                    self.run_script()
                else:
                    self.run_foreign()
                if self.step % 7 == 0:
                    self.poll_waiters()
                if self.step % 250 == 0:
                    self.sync_check()
            except (ConnectionError, OSError, AssertionError) as e:
                if isinstance(e, FuzzFailure):
                    raise
                self.fail(f"{type(e).__name__}: {e}")
        try:
            for w in self.waiters:
                w.finish()
            self.sync_check()
        except (ConnectionError, OSError) as e:
            self.fail(f"{type(e).__name__} at the end: {e}")
        self.final_checks()
        self.stats["seconds"] = round(time.monotonic() - t0, 1)
        return self.stats

    def final_checks(self):
        if not self.server.alive():
            self.fail("server process died")
        info = self.ctl.call("INFO", "lock").decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        if fields.get("lock_waiters", "?").strip() != "0" or \
                fields.get("lock_locks_with_waiters", "?").strip() != "0":
            self.fail(f"waiters left at the end:\n{info}")
        for name in self.names + self.long_names:
            r = self.ctl.call("LOCK.INFO", name)
            if _is_error(r):
                if r.code != "WRONGTYPE":
                    self.fail(f"LOCK.INFO {_short(name)} at the end: {r}")
                continue
            if self.info_dict(r)[b"waiters"] != 0:
                self.fail(f"LOCK.INFO {_short(name)} reports waiters at the end: {r!r}")


@pytest.mark.parametrize("seed", [FIXED_SEED, RANDOM_SEED],
                         ids=["seed1234", f"random-seed{RANDOM_SEED}"])
def test_fuzz_commands(make_server, seed):
    # hz 100: Redis deletes expired keys sooner, so fewer digest checks are skipped
    server = make_server(extra_config=[("hz", 100)])
    steps = (N_COMMANDS + 1) // 2
    print(f"fuzz seed {seed} ({steps} steps; reproduce with FUZZ_SEED={seed} "
          f"FUZZ_COMMANDS={N_COMMANDS}); server {REDIS_SERVER}")
    fz = Fuzzer(server, seed, steps)
    try:
        stats = fz.run()
    except FuzzFailure as e:
        raise AssertionError(f"fuzz seed {seed}: {e}") from None
    print("fuzz stats:", stats)
    assert stats["commands"] >= steps, f"fuzz seed {seed}: only {stats['commands']} commands"
    assert stats["digest_checks"] > 0 and stats["oracle_checks"] > 0, f"fuzz seed {seed}: {stats}"
    assert server.raw(2).call("PING") == b"PONG"
    assert server.alive()


# -------------------------------------------------------------------------------------------
# the chaos checker, short run (tools/reliability/chaos.py; `make chaos` runs it long)

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "10"))


def test_chaos_short():
    seed = RANDOM_SEED
    cmd = [sys.executable, str(REPO / "tools" / "reliability" / "chaos.py"),
           "--duration", str(CHAOS_SECONDS), "--seed", str(seed)]
    print("running:", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHAOS_SECONDS + 120,
                          env={**os.environ, "REDIS_SERVER": REDIS_SERVER})
    print(proc.stdout[-6000:])
    print(proc.stderr[-4000:], file=sys.stderr)
    assert proc.returncode == 0, (
        f"chaos run (seed {seed}) failed with exit code {proc.returncode}:\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    assert "overlaps: 0" in proc.stdout, proc.stdout[-3000:]
    # session holders (SESSION locks, freed when their connection closes) take part
    assert "3 session workers" in proc.stdout, proc.stdout[-3000:]
