#!/usr/bin/env python3
"""Summarise valgrind memcheck logs: leaks and memory errors, split by whether a stack frame is
in the lock module (libredis_lock.so / redis_lock:: / redis_module:: frames, or an unsymbolised
"???" frame outside any known object: the module after Valkey unloaded it at shutdown; run
valgrind with --keep-debuginfo=yes to name those).

Module records are further split into
  - load-time: allocated under RedisModule_OnLoad and never freed (one block per server, lost
    when the server unloads the module at shutdown; Valkey 9 does);
  - runtime: everything else (what grows with traffic).

    valgrind_report.py [--allow-load-time] <log>...
        exit 1 if any "definitely lost" record or memory error has a module frame (load-time
        records excepted with --allow-load-time), or a log has no leak summary (the server was
        killed before valgrind could report)
"""

import re
import sys
from pathlib import Path

MODULE_FRAME = re.compile(r"libredis_lock|redis_lock::|redis_module::|/src/(server|engine)/|"
                          r"by 0x[0-9A-F]+: \?\?\?$")
LOAD_TIME = re.compile(r"RedisModule_OnLoad|moduleLoad")
RECORD = re.compile(r"^==\d+== ([\d,]+) (?:\(([\d,]+) direct, ([\d,]+) indirect\) )?bytes in "
                    r"[\d,]+ blocks are (definitely|indirectly|possibly) lost")
ERROR = re.compile(r"^==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
                   r"Syscall param|Mismatched free|Source and destination overlap|"
                   r"Argument '.*' of function)")
SUMMARY = re.compile(r"^==\d+==\s+definitely lost: ([\d,]+) bytes")


def num(s):
    return int(s.replace(",", "")) if s else 0


def blocks(lines, start):
    """The stack lines that follow a record header, up to the blank ==pid== line."""
    out = []
    for line in lines[start + 1:]:
        if re.match(r"^==\d+==\s*$", line):
            break
        out.append(line)
    return out


def main(paths, allow_load_time=False):
    total_def = 0
    runtime_def = load_def = 0
    runtime_records, load_records, module_errors, other_errors, no_summary = [], [], [], 0, []
    for path in paths:
        lines = Path(path).read_text(errors="replace").splitlines()
        summaries = [num(m.group(1)) for m in map(SUMMARY.match, lines) if m]
        if not any("LEAK SUMMARY" in l or "All heap blocks were freed" in l for l in lines):
            no_summary.append(path)
        total_def += sum(summaries)
        for i, line in enumerate(lines):
            m = RECORD.match(line)
            if m and m.group(4) == "definitely":
                stack = blocks(lines, i)
                if any(MODULE_FRAME.search(s) for s in stack):
                    # direct bytes (what the LEAK SUMMARY's "definitely lost" counts); the
                    # blocks only this one pointed to are "indirectly lost"
                    nbytes = num(m.group(2)) if m.group(2) else num(m.group(1))
                    if any(LOAD_TIME.search(s) for s in stack):
                        load_def += nbytes
                        load_records.append((path, [line] + stack[:30]))
                    else:
                        runtime_def += nbytes
                        runtime_records.append((path, [line] + stack[:30]))
            elif ERROR.match(line):
                stack = blocks(lines, i)
                if any(MODULE_FRAME.search(s) for s in stack):
                    module_errors.append((path, [line] + stack[:30]))
                else:
                    other_errors += 1
    module_def = runtime_def + load_def
    print(f"valgrind logs: {len(paths)}")
    print(f"definitely lost, all: {total_def} bytes")
    print(f"definitely lost, with a lock-module frame: {module_def} bytes "
          f"(runtime {runtime_def} bytes in {len(runtime_records)} records; "
          f"load-time, lost at unload: {load_def} bytes in {len(load_records)} records)")
    print(f"memory errors with a lock-module frame: {len(module_errors)}")
    print(f"memory errors elsewhere (server, libc): {other_errors}")
    shown = set()
    for path, rec in runtime_records + module_errors + load_records:
        key = tuple(re.sub(r"^==\d+==|0x[0-9A-F]+|loss record [\d,]+ of [\d,]+", "", l) for l in rec)
        if key in shown:
            continue  # the same stack from another server
        shown.add(key)
        print(f"--- {path}")
        print("\n".join(rec))
    if no_summary:
        print(f"logs without a leak summary (server killed before exit?): {len(no_summary)}")
        for p in no_summary[:10]:
            print("   ", p)
    bad = runtime_def > 0 or module_errors or no_summary or (load_def > 0 and not allow_load_time)
    print("leak check: FAILED" if bad else "leak check: OK")
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    allow = "--allow-load-time" in args
    args = [a for a in args if a != "--allow-load-time"]
    if not args:
        print("no valgrind logs given (did any server start?)")
        sys.exit(1)
    sys.exit(main(args, allow))
