"""tools/profile/instructions.py (`make instructions`) counts server instructions per lock
operation under callgrind. A small run on the server under test: every protocol gets a row with
real counts, and the counts order as the work does (a floor pair does less than a native pair
without the signal list, which does less than one with it)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import LOCK_MODULE, REDIS_SERVER

TOOL = Path(__file__).resolve().parent.parent / "tools" / "profile" / "instructions.py"

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None,
                                reason="valgrind is not installed (make test installs it)")


def test_instruction_counts_per_protocol():
    out = subprocess.run(
        [sys.executable, str(TOOL), "--server", REDIS_SERVER, "--module", LOCK_MODULE,
         "--pairs", "300", "--handoffs", "200"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\| ([\w-]+) \| (\d+) [\w-]+s \| ([\d,]+) \| ([\d,]+) \|", line)
        if m:
            rows[m.group(1)] = tuple(int(g.replace(",", "")) for g in m.groups()[1:])
    assert set(rows) == {"native", "native-nosig", "python", "floor", "handoff"}, out.stdout
    for protocol, (count, in_call, whole) in rows.items():
        assert count > 0 and 1000 < in_call < whole, (protocol, rows[protocol])
    assert rows["floor"][1] < rows["native-nosig"][1] < rows["native"][1], rows
    tax = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\| (tax-[\w-]+) \| (\d+) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)x \|", line)
        if m:
            tax[m.group(1)] = (int(m.group(2)), int(m.group(3).replace(",", "")),
                               int(m.group(4).replace(",", "")), float(m.group(5)))
    assert set(tax) == {"tax-set", "tax-set-new", "tax-incr"}, out.stdout
    for protocol, (count, with_module, without, _) in tax.items():
        assert count > 0 and 500 < without <= with_module * 1.05, (protocol, tax[protocol])
    # A write of an existing key that is not a lock: the module is not called at all (it does
    # not listen to the STRING class), so it costs the server next to nothing. Nor a new key:
    # with `signal yes` the module does not listen to `new` (1.25x on Redis 7.0 when it did).
    assert all(tax[p][3] < 1.10 for p in ("tax-set", "tax-incr", "tax-set-new")), tax
