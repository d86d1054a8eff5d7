"""Cluster mode (one node owning every slot): names need a non-empty {hash tag}."""

from harness import error_code, snapshot, wait_until


def test_cluster_names_need_a_hash_tag(make_server):
    s = make_server(extra_config=[("cluster-enabled", "yes"),
                                  ("cluster-config-file", "nodes.conf")])
    c = s.client()
    c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_until(lambda: c.cluster("info").get("cluster_state") == "ok", message="cluster ok")

    # a name with a hash tag works; lock:x{t} and lock-signal:x{t} share its slot
    assert c.execute_command("LOCK.ACQUIRE", "x{t}", "ID", "a", "EX", "10") == b"a"
    assert c.get("lock:x{t}") == b"a"
    assert c.execute_command("LOCK.RELEASE", "x{t}", "a") == b"OK"
    assert c.lrange("lock-signal:x{t}", 0, -1) == [b"1"]

    # without a non-empty hash tag: a clear error, nothing written
    for name in ("x", "x{}", "{}x", ""):
        before = snapshot(c)
        try:
            reply = c.execute_command("LOCK.ACQUIRE", name, "ID", "a")
        except Exception as e:  # noqa: BLE001
            assert error_code(e), name
        else:
            raise AssertionError(f"LOCK.ACQUIRE {name!r} in cluster mode replied {reply!r}")
        assert snapshot(c) == before, name
