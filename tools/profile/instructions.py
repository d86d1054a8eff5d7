"""Server instructions per lock operation, counted by callgrind: a measure of what the module
costs the server that, unlike lockbench's µs, does not move with the load on a shared machine.

For each protocol it starts a fresh server under `valgrind --tool=callgrind` with the module
loaded, warms it up, switches instrumentation on for the measured run only, and reads from the
profile the instructions spent inside the server's `call()` (what `INFO commandstats` times:
the commands and their writes, notifications and replication, not the networking) and in the
whole server. Protocols:

- native:        LOCK.ACQUIRE <n> ID <id> EX 10 NOWAIT, LOCK.RELEASE <n> <id>
- native-nosig:  the same with `lock.signal no`
- python:        python-redis-lock's SET <k> <id> NX EX 10, EVALSHA <unlock> 2 <k> <signal> <id> 1000
- floor:         SET <k> <id> NX EX 10, DEL <k>
- handoff:       contended: CLIENTS connections on one lock, each acquiring (waiting), then
                 releasing at once; counted per hand-off
- tax-set, tax-set-new, tax-incr: the module tax on other traffic: plain `SET key:<i> xxx` over
                 1000 existing keys, `SET` of a new key each time, `INCR` over 1000 existing keys,
                 each measured on a server with the module and on the same binary without it

The pairs cycle over 16 locks with LAG locks held at any time (the acquire of lock i is sent
with the release of lock i-LAG), pipelined 50 pairs at a time on one connection.

Usage: python tools/profile/instructions.py [--server redis-server] [--module PATH]
           [--pairs 10000] [--handoffs 5000]
           [--protocols native,native-nosig,python,floor,handoff,tax-set,tax-set-new,tax-incr]
           [--keep DIR]
Prints a markdown table.
"""

import argparse
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNLOCK = b"""if redis.call("get", KEYS[1]) ~= ARGV[1] then
    return 1
else
    redis.call("del", KEYS[2])
    redis.call("lpush", KEYS[2], 1)
    redis.call("pexpire", KEYS[2], ARGV[2])
    redis.call("del", KEYS[1])
    return 0
end
"""
LOCKS = 16
BATCH = 50
TAX_KEYS = 1000
TAX = ("tax-set", "tax-set-new", "tax-incr")


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def replies(self, n):
        """Reads n replies (simple strings, errors, integers, bulk strings, nulls only)."""
        out = []
        while len(out) < n:
            parsed = self._one()
            if parsed is None:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.buf += data
                continue
            out.append(parsed)
        return out

    def _one(self):
        end = self.buf.find(b"\r\n")
        if end < 0:
            return None
        head = self.buf[:end]
        if head[:1] == b"$" and head != b"$-1":
            size = int(head[1:])
            if len(self.buf) < end + 2 + size + 2:
                return None
            value = self.buf[end + 2:end + 2 + size]
            self.buf = self.buf[end + 2 + size + 2:]
            return value
        self.buf = self.buf[end + 2:]
        return head

    def call(self, *args):
        self.send(enc(*args))
        return self.replies(1)[0]


def pair_commands(protocol, i, lag, sha, tag):
    name, old = f"job{i % LOCKS}", f"job{(i - lag) % LOCKS}"
    me, prev = f"{tag}{i}", f"{tag}{i - lag}"
    if protocol in ("native", "native-nosig"):
        return enc("LOCK.ACQUIRE", name, "ID", me, "EX", 10, "NOWAIT") + \
            enc("LOCK.RELEASE", old, prev)
    if protocol == "python":
        return enc("SET", "lock:" + name, me, "NX", "EX", 10) + \
            enc("EVALSHA", sha, 2, "lock:" + old, "lock-signal:" + old, prev, 1000)
    if protocol == "floor":
        return enc("SET", "lock:" + name, me, "NX", "EX", 10) + enc("DEL", "lock:" + old)
    raise ValueError(protocol)


def run_pairs(port, protocol, n, lag, tag):
    conn = Conn(port)
    if protocol == "native-nosig":
        conn.call("CONFIG", "SET", "lock.signal", "no")
    sha = conn.call("SCRIPT", "LOAD", UNLOCK).decode()
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        conn.send(b"".join(pair_commands(protocol, i, lag, sha, tag) for i in range(start, start + count)))
        replies = conn.replies(2 * count)
        # The first LAG releases name locks nobody holds yet: NOTACQUIRED.
        bad = [r for r in replies if r[:1] == b"-" and not r.startswith(b"-NOTACQUIRED")]
        if bad:
            raise RuntimeError(f"{protocol}: unexpected reply {bad[0]!r}")
    conn.sock.close()


def tax_command(protocol, i, tag):
    if protocol == "tax-set":
        return enc("SET", f"key:{i % TAX_KEYS}", "xxx")
    if protocol == "tax-set-new":
        return enc("SET", f"new:{tag}:{i}", "xxx")
    if protocol == "tax-incr":
        return enc("INCR", f"counter:{i % TAX_KEYS}")
    raise ValueError(protocol)


def run_tax(port, protocol, n, tag):
    """Plain commands that are not the module's, pipelined 2*BATCH at a time."""
    conn = Conn(port)
    for start in range(0, n, 2 * BATCH):
        count = min(2 * BATCH, n - start)
        conn.send(b"".join(tax_command(protocol, i, tag) for i in range(start, start + count)))
        bad = [r for r in conn.replies(count) if r[:1] == b"-"]
        if bad:
            raise RuntimeError(f"{protocol}: unexpected reply {bad[0]!r}")
    conn.sock.close()


def run_handoffs(port, n, clients, tag):
    """CLIENTS connections contend for one lock; each grant is released at once."""
    sel = selectors.DefaultSelector()
    conns = []
    for c in range(clients):
        conn = Conn(port)
        conn.id = f"{tag}-{c}"
        conn.send(enc("LOCK.ACQUIRE", "hot", "ID", conn.id, "EX", 10))
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    grants = 0
    while grants < n:
        for key, _ in sel.select(timeout=10):
            conn = key.data
            data = conn.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            conn.buf += data
            while (reply := conn._one()) is not None:
                if reply == b"+OK":
                    conn.send(enc("LOCK.ACQUIRE", "hot", "ID", conn.id, "EX", 10))
                elif reply[:1] in (b"-", b"+") or reply == b"$-1":
                    raise RuntimeError(f"unexpected reply {reply!r}")
                else:
                    grants += 1
                    conn.send(enc("LOCK.RELEASE", "hot", conn.id))
    for conn in conns:
        conn.sock.close()


def step(what):
    print(f"instructions.py: {time.strftime('%H:%M:%S')} {what}", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inclusive(profile, function):
    """Inclusive instructions of `function` in a callgrind profile (0 if absent)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", profile],
                         capture_output=True, text=True, check=True).stdout
    pattern = re.compile(r"^\s*([\d,]+)\s.*[:\s]" + re.escape(function) + r"(\s|\[|$)")
    for line in out.splitlines():
        m = pattern.match(line)
        if m:
            return int(m.group(1).replace(",", ""))
    return 0


def totals(profile):
    """The profile's total instructions (its `totals:` line; `summary:` is written at start)."""
    total = 0
    with open(profile) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
    return total


def measure(args, protocol, workdir, with_module=True):
    port = free_port()
    suffix = "" if with_module else "-without-module"
    profile = os.path.join(workdir, f"callgrind.{protocol}{suffix}")
    load = ["--loadmodule", args.module] if with_module else []
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}",
         args.server, "--port", str(port), "--save", "", "--appendonly", "no", *load],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if Conn(port).call("PING") == b"+PONG":
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("the server under valgrind did not start")
            time.sleep(0.2)
        if protocol == "handoff":
            count = args.handoffs
            def work(n, tag):
                run_handoffs(port, n, args.clients, tag)
        elif protocol in TAX:
            count = args.pairs
            def work(n, tag):
                run_tax(port, protocol, n, tag)
        else:
            count = args.pairs
            def work(n, tag):
                run_pairs(port, protocol, n, args.lag, tag)
        # Warm-up: tables, script cache, allocator; for the tax runs, every key of the run.
        work(max(count // 5, TAX_KEYS if protocol in TAX else 100), "warm")
        if protocol not in TAX:
            # The warm-up's last locks are still held. The tax runs keep their keys: a plain
            # SET or INCR of an existing key (tax-set-new makes new keys on purpose).
            Conn(port).call("FLUSHALL")
        step(f"{protocol}: warmed up")
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                       check=True, capture_output=True)
        work(count, "measured")
        step(f"{protocol}: measured")
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)],
                       check=True, capture_output=True)
        Conn(port).call("SHUTDOWN", "NOSAVE")
    except ConnectionError:
        pass  # SHUTDOWN closes the connection
    finally:
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return count, inclusive(profile, "call"), totals(profile)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.environ.get("REDIS_SERVER", "redis-server"))
    p.add_argument("--module", default=os.environ.get(
        "LOCK_MODULE", os.path.join(ROOT, "target/release/libredis_lock.so")))
    p.add_argument("--pairs", type=int, default=10000)
    p.add_argument("--handoffs", type=int, default=5000)
    p.add_argument("--clients", type=int, default=8, help="connections in the handoff run")
    p.add_argument("--lag", type=int, default=8, help="locks held at once in the pair runs")
    p.add_argument("--protocols",
                   default="native,native-nosig,python,floor,handoff," + ",".join(TAX))
    p.add_argument("--keep", metavar="DIR",
                   help="keep the callgrind profiles in DIR (callgrind.<protocol>), for callgrind_annotate")
    args = p.parse_args()
    for tool in ("valgrind", "callgrind_annotate", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions.py: {tool} not found (apt install valgrind)")
    protocols = [x for x in args.protocols.split(",") if x]
    rows, without = {}, {}

    def measure_all(workdir):
        for protocol in protocols:
            rows[protocol] = measure(args, protocol, workdir)
            if protocol in TAX:
                without[protocol] = measure(args, protocol, workdir, with_module=False)

    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        measure_all(args.keep)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            measure_all(workdir)
    version = subprocess.run([args.server, "--version"], capture_output=True, text=True).stdout
    print(f"server: {version.strip()}")
    print()
    print("| protocol | operations | instructions per op in call() | whole server per op | call() vs python |")
    print("|---|---:|---:|---:|---:|")
    python = rows.get("python")
    for protocol, (count, in_call, whole) in rows.items():
        if protocol in TAX:
            continue
        ratio = ""
        if python and protocol != "handoff" and python[1]:
            ratio = f"{(in_call / count) / (python[1] / python[0]):.2f}x"
        unit = "hand-off" if protocol == "handoff" else "pair"
        print(f"| {protocol} | {count} {unit}s | {in_call / count:,.0f} | {whole / count:,.0f} | {ratio} |")

    if without:
        print()
        print("| other traffic | commands | instructions per command in call(), with the module "
              "| without it | with vs without |")
        print("|---|---:|---:|---:|---:|")
        for protocol, (count, in_call, _) in rows.items():
            if protocol not in without:
                continue
            base = without[protocol][1] / without[protocol][0]
            ratio = f"{(in_call / count) / base:.3f}x" if base else ""
            print(f"| {protocol} | {count} | {in_call / count:,.0f} | {base:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
