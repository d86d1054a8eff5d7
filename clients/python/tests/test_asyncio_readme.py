"""The asyncio example of clients/python/README.md runs as written (against a test server)."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_asyncio_example_runs(server):
    section = README.split("## asyncio", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1 and "redis_lock_native.asyncio" in blocks[0]
    exec(compile(blocks[0].replace("port=6379", f"port={server.port}"), "README asyncio example", "exec"), {})
    c = server.client()
    assert c.keys("lock:*") == []  # it released, reset and left nothing held
    assert c.info("lock")["lock_grants_immediate"] >= 3
