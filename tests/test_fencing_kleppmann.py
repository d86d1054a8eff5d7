"""Kleppmann's scenario ("How to do distributed locking", 2016) against the README's example
resources: holder A (FENCE, PX 200) pauses past its expiry; B is granted with a larger token
and writes; A wakes up and writes with its old token: the resource refuses it. Both examples
run: the Python FencedStore and the SQL UPDATE (on sqlite3)."""

import re
import sqlite3

import pytest

from harness import acquire_bg, wait_waiters
from test_readme import README, blocks
from test_fencing import fenced


def readme_store_class(server):
    [block] = [b for b in blocks("python") if "class FencedStore" in b]
    namespace = {}
    exec(compile(block.replace("port=6379", f"port={server.port}"), "README FencedStore", "exec"),
         namespace)
    return namespace["FencedStore"]


def readme_sql_update():
    [block] = blocks("sql")
    return re.sub(r"--.*", "", block).strip().rstrip(";")


@pytest.mark.parametrize("protocol", [2, 3])
def test_paused_holder_is_fenced_off(server, protocol):
    c = server.client(protocol=protocol)
    store = readme_store_class(server)()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE invoices (id TEXT PRIMARY KEY, status TEXT, fence INTEGER)")
    db.execute("INSERT INTO invoices VALUES ('invoice-42', 'open', 0)")
    update = readme_sql_update()

    def sql_write(token, status):
        cur = db.execute(update, {"status": status, "token": token, "id": "invoice-42"})
        return cur.rowcount

    a_owner, a_token = fenced(c, "invoices", "ID", "A", "PX", 200)
    # A "pauses" (a GC, a stopped VM): it does nothing while B waits and its lease runs out
    b = acquire_bg(server, "invoices", "ID", "B", "FENCE", "PX", 30000, protocol=protocol)
    wait_waiters(c, "invoices", 1)
    b_owner, b_token = b.result(timeout=10)  # granted at A's expiry
    assert b_owner == b"B" and b_token > a_token
    store.write(b_token, "invoice-42", "paid by B")
    assert sql_write(b_token, "paid by B") == 1
    # A wakes up, still believing it holds the lock, and writes with its token
    with pytest.raises(PermissionError, match="stale fencing token"):
        store.write(a_token, "invoice-42", "paid by A")
    assert sql_write(a_token, "paid by A") == 0
    assert store.data == {"invoice-42": "paid by B"}
    assert db.execute("SELECT status, fence FROM invoices").fetchone() == ("paid by B", b_token)
    assert c.execute_command("LOCK.OWNER", "invoices") == b"B"
    c.execute_command("LOCK.RELEASE", "invoices", "B")
    assert "every acquire of a fenced lock must use `FENCE`" in README
