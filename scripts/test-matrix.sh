#!/usr/bin/env bash
# Runs the integration suite once per server binary given as arguments, then prints a table of
# pass counts per server and one closing line. Fails if any run failed.
#   scripts/test-matrix.sh <server binary>... [-- <pytest args: test paths, -k, -x …>]
set -uo pipefail
cd "$(dirname "$0")/.."

servers=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do servers+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
pytest_args=("$@")

summary=()
total_passed=0
total_failed=0
status=0
for server in "${servers[@]}"; do
  version=$("$server" --version | grep -o 'v=[0-9.]*' | head -1)
  name="$(basename "$server") ${version#v=}"
  echo "=== integration tests on $name ($server)"
  log=$(mktemp)
  REDIS_SERVER=$server .venv/bin/pytest -c tests/pytest.ini -p no:cacheprovider "${pytest_args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  last=$(grep -E '^=*.*[0-9]+ (passed|failed|error)' "$log" | tail -1)
  passed=$(grep -oE '[0-9]+ passed' <<<"$last" | awk '{s+=$1} END {print s+0}')
  failed=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$last" | awk '{s+=$1} END {print s+0}')
  [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
  rm -f "$log"
  summary+=("$(printf '%-28s %6s passed %6s failed' "$name" "$passed" "$failed")")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  [ "$rc" -ne 0 ] && status=1
done

echo
echo "=== server matrix"
printf '%s\n' "${summary[@]}"
echo "matrix: $total_passed passed, $total_failed failed"
exit $status
