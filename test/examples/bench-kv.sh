#!/bin/bash
# faultline bench kv at a small size: it starts its servers and load
# generator, prints every key of its JSON report, and leaves nothing behind.
# A smoke test of the benchmark's plumbing, not of its figures.
# Usage: bench-kv.sh FAULTLINE (KV_SERVER, KV_LOAD in the environment)
set -u
F=$1
T=$(mktemp -d /var/tmp/fl-bench-kv-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=examples/bench-kv

TMPDIR="$T" "$F" bench kv --json --sizes 16M --seconds 1 > "$T/out" 2> "$T/err"
rc=$?
ok bench-kv-exit-0 '[ $rc = 0 ] || { cat "$T/err" >&2; false; }'
ok bench-kv-keys 'python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
s = d[\"16m\"]
for srv in [\"live\", \"fork\"] + ([\"redis\"] if d[\"redis\"] else []):
    for k in (\"nosave_rps\", \"save_rps\", \"save_p99_us\", \"save_max_us\", \"save_s\"):
        assert s[srv][k] > 0, (srv, k)
assert s[\"untracked\"][\"nosave_rps\"] > 0
assert s[\"tracking\"] in (\"async\", \"sync\", \"mprotect\")
for k in (\"idle_ratio\", \"save_rps_ratio\", \"save_p99_vs_fork\", \"save_max_vs_fork\"):
    assert s[k] > 0, k
assert s[\"goal_save_max\"] is None and d[\"goal_met\"] is False
" "$T/out" || { cat "$T/out" >&2; false; }'
ok bench-kv-no-scratch '[ -z "$(ls -d "$T"/faultline-bench-kv-* 2>/dev/null)" ] || { ls -AR "$T" >&2; false; }'
ok bench-kv-no-servers '! pgrep -f "kv-server --port 0 --arena 16777216" > /dev/null'
ok bench-kv-help 'TMPDIR="$T" "$F" bench kv --help | grep -q "idle_ratio"'
summary
