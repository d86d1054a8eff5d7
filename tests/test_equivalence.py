"""Equivalence of the module's writes (issue 10): what the rest of the server sees of every
action: the keyspace notifications a `PSUBSCRIBE __keyspace@*__:*` client receives, the AOF's
command sequence (absolute times normalised), and `rdb_changes_since_last_save`. The reference
is captured from the RM_Call build into tests/fixtures/equivalence.json (per server family:
Redis 7.0 settles a foreign free in a timer, 7.2+ and Valkey in a post-notification job) with
`EQUIVALENCE_RECORD=1`; any later way of writing must reproduce it exactly.

WATCH/EXEC outcomes are asserted directly: a refused RELEASE must not abort a watcher's EXEC,
a successful one must.

Both ways of writing run: the key API (every server tested here has it) and RM_Call, which
servers without `RedisModule_SetAbsExpire` (Redis 7.0.0-7.0.4) use; `REDIS_LOCK_RM_CALL_WRITES=1`
in the server's environment makes the module take that path."""

import glob
import json
import os
import re

import pytest

from harness import acquire_bg, wait_until, wait_waiters

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "equivalence.json")
RECORD = os.environ.get("EQUIVALENCE_RECORD") == "1"


def family(c) -> str:
    info = c.info("server")
    if "valkey_version" in info:
        return "valkey-" + str(info["valkey_version"]).split(".")[0]
    return "redis-" + ".".join(str(info["redis_version"]).split(".")[:2])


def aof_commands(server):
    """Every command in the AOF's incremental files, as lists of str, times normalised."""
    out = []
    for path in sorted(glob.glob(os.path.join(server.dir, "appendonlydir", "*.incr.aof"))):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            assert data[i:i + 1] == b"*", data[i:i + 40]
            end = data.index(b"\r\n", i)
            n = int(data[i + 1:end])
            i = end + 2
            cmd = []
            for _ in range(n):
                end = data.index(b"\r\n", i)
                ln = int(data[i + 1:end])
                arg = data[end + 2:end + 2 + ln].decode("latin-1")
                i = end + 2 + ln + 2
                cmd.append("<T>" if re.fullmatch(r"1\d{12}", arg) else arg)
            out.append(cmd)
    return out


class Observer:
    def __init__(self, server):
        self.c = server.client()
        self.ps = server.client().pubsub()
        self.ps.psubscribe("__keyspace@*__:*")
        self.ps.get_message(timeout=5)  # the psubscribe confirmation
        self.n = 0

    def events(self):
        """Notifications up to a sentinel write, as 'db:key:event'."""
        self.n += 1
        sentinel = f"sentinel{self.n}"
        self.c.set(sentinel, "1")
        got = []
        while True:
            m = self.ps.get_message(timeout=5)
            assert m is not None, f"no sentinel notification; got {got}"
            if m["type"] != "pmessage":
                continue
            ch = m["channel"].decode()
            if ch.endswith(":" + sentinel):
                return got
            db, key = ch[len("__keyspace@"):].split("__:", 1)
            got.append(f"{db}:{key}:{m['data'].decode()}")


def _hold(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", "60000")


def _with_waiter(server, c, px="60000"):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", px)
    w = acquire_bg(server, "n", "ID", "b", "PX", "60000", label="b")
    wait_waiters(c, "n", 1)
    return w


def act_acquire_px(server, c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", "60000") == b"a"


def act_acquire_no_expiry(server, c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a") == b"a"


def act_extend(server, c):
    assert c.execute_command("LOCK.EXTEND", "n", "a", "PX", "90000") == b"OK"


def act_release_free(server, c):
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"


def act_release_handoff(server, c):
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert server.waiter.result(timeout=5) == b"b"


def act_reset(server, c):
    assert c.execute_command("LOCK.RESET", "n") == 1


def act_resetall(server, c):
    # one lock: with more, the order is SCAN's (hash order), not the module's
    assert c.execute_command("LOCK.RESETALL") == 1


def act_expiry_handoff(server, c):
    assert server.waiter.result(timeout=5) == b"b"


def act_take_back(server, c):
    """The grant goes to a client killed in the same turn: the module takes it back."""
    p = c.pipeline(transaction=False)
    p.execute_command("LOCK.RELEASE", "n", "a")
    p.execute_command("CLIENT", "KILL", "ID", str(server.waiter.client_id))
    p.execute()
    wait_until(lambda: c.exists("lock:n") == 0, message="grant taken back")


def setup_none(server, c):
    pass


def setup_waiter(server, c):
    server.waiter = _with_waiter(server, c)


def setup_expiring_waiter(server, c):
    server.waiter = _with_waiter(server, c, px="150")


ACTIONS = {
    "acquire-px": (setup_none, act_acquire_px),
    "acquire-no-expiry": (setup_none, act_acquire_no_expiry),
    "extend": (lambda s, c: _hold(c), act_extend),
    "release-free": (lambda s, c: _hold(c), act_release_free),
    "release-handoff": (setup_waiter, act_release_handoff),
    "reset": (lambda s, c: _hold(c), act_reset),
    "resetall": (lambda s, c: _hold(c), act_resetall),
    "expiry-handoff": (setup_expiring_waiter, act_expiry_handoff),
    "take-back": (setup_waiter, act_take_back),
}


WRITES = {
    "key-api": ({}, "lock: LOCK.* commands write through the key API"),
    "rm-call": ({"REDIS_LOCK_RM_CALL_WRITES": "1"},
                "lock: LOCK.* commands write through RM_Call (REDIS_LOCK_RM_CALL_WRITES=1)"),
}


def start(make_server, writes, extra_config):
    """A server whose module writes the way `writes` names (checked in its log)."""
    env, logged = WRITES[writes]
    s = make_server(extra_config=extra_config, env=env)
    assert logged in s.log_tail(400), s.log_tail(400)
    return s


def observe(make_server, action, writes="key-api"):
    s = start(make_server, writes, [("appendonly", "yes"), ("appendfsync", "always"),
                                    ("notify-keyspace-events", "KEA")])
    c = s.client()
    setup, act = ACTIONS[action]
    setup(s, c)
    obs = Observer(s)
    aof_before = len(aof_commands(s))
    dirty_before = int(c.info("persistence")["rdb_changes_since_last_save"])
    act(s, c)
    events = obs.events()
    dirty = int(c.info("persistence")["rdb_changes_since_last_save"]) - dirty_before - 1
    aof = [cmd for cmd in aof_commands(s)[aof_before:] if not cmd[-1:] == ["1"]
           or not cmd[1].startswith("sentinel")]
    return family(c), {"events": events, "aof": aof, "dirty": dirty}


@pytest.mark.parametrize("writes", sorted(WRITES))
@pytest.mark.parametrize("action", sorted(ACTIONS), ids=sorted(ACTIONS))
def test_writes_look_like_the_rm_call_build(make_server, action, writes):
    if RECORD and writes != "rm-call":
        pytest.skip("the reference is recorded from the RM_Call writes")
    fam, seen = observe(make_server, action, writes)
    fixtures = json.load(open(FIXTURE)) if os.path.exists(FIXTURE) else {}
    if RECORD:
        fixtures.setdefault(fam, {})[action] = seen
        with open(FIXTURE, "w") as f:
            json.dump(fixtures, f, indent=1, sort_keys=True)
            f.write("\n")
        return
    if fam not in fixtures or action not in fixtures[fam]:
        pytest.fail(f"no reference for {fam}/{action}: record it from the RM_Call build "
                    f"(EQUIVALENCE_RECORD=1)")
    assert seen == fixtures[fam][action]


@pytest.mark.parametrize("writes", sorted(WRITES))
def test_watch_sees_only_real_releases(make_server, writes):
    server = start(make_server, writes, [])
    c = server.client()
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    watcher = server.client()
    # a refused RELEASE (wrong id) changes nothing: the watcher's EXEC goes through
    p = watcher.pipeline(transaction=True)
    p.watch("lock:n", "lock-signal:n")
    with pytest.raises(Exception):
        c.execute_command("LOCK.RELEASE", "n", "wrong")
    p.multi()
    p.set("x", "1")
    assert p.execute() == [True]
    # a successful one aborts it
    p = watcher.pipeline(transaction=True)
    p.watch("lock:n")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    p.multi()
    p.set("x", "2")
    with pytest.raises(Exception):  # redis.WatchError
        p.execute()
    assert c.get("x") == b"1"


# (what happens before, the command, the key a client WATCHes meanwhile, whether its EXEC is
# aborted). A command that only reads a key (a refused or no-op command, a key it checks but
# does not write) must leave a watcher's EXEC alone, whichever way it opened the key; each key a
# command writes must abort it, as the plain command's write does.
WATCH_CASES = [
    ("acquire free", [], ["LOCK.ACQUIRE", "{n}", "ID", "a"], "lock:{n}", True),
    ("acquire free, signal key", [], ["LOCK.ACQUIRE", "{n}", "ID", "a"], "lock-signal:{n}", False),
    ("acquire busy", [["LOCK.ACQUIRE", "{n}", "ID", "a"]],
     ["LOCK.ACQUIRE", "{n}", "ID", "b", "NOWAIT"], "lock:{n}", False),
    ("acquire busy, signal key", [["LOCK.ACQUIRE", "{n}", "ID", "a"]],
     ["LOCK.ACQUIRE", "{n}", "ID", "b", "NOWAIT"], "lock-signal:{n}", False),
    ("acquire fence", [], ["LOCK.ACQUIRE", "{n}", "ID", "a", "FENCE"], "lock-fence:{n}", True),
    ("acquire busy fence", [["LOCK.ACQUIRE", "{n}", "ID", "a", "FENCE"]],
     ["LOCK.ACQUIRE", "{n}", "ID", "b", "NOWAIT", "FENCE"], "lock-fence:{n}", False),
    ("release", [["LOCK.ACQUIRE", "{n}", "ID", "a"]], ["LOCK.RELEASE", "{n}", "a"],
     "lock-signal:{n}", True),
    ("release refused, signal key", [["LOCK.ACQUIRE", "{n}", "ID", "a"]],
     ["LOCK.RELEASE", "{n}", "b"], "lock-signal:{n}", False),
    ("extend", [["LOCK.ACQUIRE", "{n}", "ID", "a", "PX", "50000"]],
     ["LOCK.EXTEND", "{n}", "a", "PX", "60000"], "lock:{n}", True),
    ("extend, signal key", [["LOCK.ACQUIRE", "{n}", "ID", "a", "PX", "50000"]],
     ["LOCK.EXTEND", "{n}", "a", "PX", "60000"], "lock-signal:{n}", False),
    ("extend refused", [["LOCK.ACQUIRE", "{n}", "ID", "a", "PX", "50000"]],
     ["LOCK.EXTEND", "{n}", "b", "PX", "60000"], "lock:{n}", False),
    ("owner", [["LOCK.ACQUIRE", "{n}", "ID", "a"]], ["LOCK.OWNER", "{n}"], "lock:{n}", False),
    ("reset", [["LOCK.ACQUIRE", "{n}", "ID", "a"]], ["LOCK.RESET", "{n}"], "lock:{n}", True),
]


@pytest.mark.parametrize("writes", sorted(WRITES))
def test_watch_is_aborted_exactly_by_the_keys_written(make_server, writes):
    server = start(make_server, writes, [])
    c = server.client()
    watcher = server.client()
    wrong = []
    for i, (case, before, command, watched, aborted) in enumerate(WATCH_CASES):
        name = f"w{i}"
        for setup in before:
            c.execute_command(*[a.format(n=name) for a in setup])
        p = watcher.pipeline(transaction=True)
        p.watch(watched.format(n=name))
        try:
            c.execute_command(*[a.format(n=name) for a in command])
        except Exception:  # a refused command: its error is not what this test looks at
            pass
        p.multi()
        p.set("x", case)
        try:
            went_through = p.execute() == [True]
        except Exception:  # redis.WatchError
            went_through = False
        if went_through == aborted:
            wrong.append((case, "went through" if went_through else "aborted"))
    assert wrong == []


def test_overwrites_fire_what_set_fires_including_new(make_server):
    """With the `new` class on too (not part of `A`): a hand-off overwrites the lock key the way
    `SET k v PX` overwrites an existing key (no `new` event; the key API's StringSet would
    delete and re-add it), and a FENCE grant overwrites the fence key like a plain `SET`."""
    s = make_server(extra_config=[("notify-keyspace-events", "KEAn")])
    c = s.client()
    obs = Observer(s)
    c.set("lock:ref", "x")
    c.set("lock-fence:ref", "1")
    obs.events()
    # what the grant writes, in its order (the fence key first), as plain commands
    c.set("lock-fence:ref", "2")
    c.set("lock:ref", "y", px=60000)
    # (`new` is on: the observer's sentinel keys show up with theirs)
    plain = [e.replace(":ref:", ":n:") for e in obs.events() if ":sentinel" not in e]
    assert not any(e.endswith(":new") for e in plain), plain
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", "60000", "FENCE")
    w = acquire_bg(s, "n", "ID", "b", "PX", "60000", "FENCE", label="b")
    wait_waiters(c, "n", 1)
    obs.events()
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert w.result(timeout=5)[0] == b"b"
    seen = [e for e in obs.events() if not e.endswith(":lock.handoff") and ":sentinel" not in e]
    assert seen == plain
