#!/bin/bash
# faultline bench migrate --quick: two network namespaces joined by a veth
# pair, tbf on it, the in-process relay: every key of the JSON report is
# there and sane (not its figures: benchmarks are not tests), and nothing
# is left behind, also when the run is interrupted.
# Usage: bench-migrate.sh FAULTLINE
set -u
F=$1
T=$(mktemp -d /tmp/fl-bench-migrate-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=migrate/bench-migrate

# What the benchmark needs, tried in a namespace of its own.
why=
if [ "$(id -u)" != 0 ]; then
	why="not root (network namespaces, userfaultfd)"
elif ! command -v ip > /dev/null || ! command -v tc > /dev/null || ! command -v unshare > /dev/null; then
	why="ip, tc or unshare missing"
elif ! unshare --net sh -c 'ip link add fl-t-a type veth peer name fl-t-b &&
	tc qdisc add dev fl-t-a root tbf rate 1gbit burst 128kb latency 2ms' > /dev/null 2>&1; then
	why="no network namespace, veth or tbf here"
fi
if [ -n "$why" ]; then
	skip_case run "$why"
	summary
	exit $([ "$fail" = 0 ] && echo 77 || echo 1)
fi

timeout "$(t_scale 300)" "$F" bench migrate --quick --reps 2 --json > "$T/out" 2> "$T/err"
rc=$?
ok exit-0 '[ $rc = 0 ] || { cat "$T/err" >&2; false; }'
ok keys 'python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
num = lambda k: isinstance(d[k], (int, float)) and not isinstance(d[k], bool)
for k in (\"size_1g\", \"size_4g\", \"downtime_ms_1g\", \"downtime_ms_4g\", \"stopcopy_ms_1g\",
          \"stopcopy_ms_4g\", \"downtime_flat\", \"downtime_ratio\", \"downtime_ratio_1g\",
          \"downtime_ratio_4g\", \"request_p50_us\", \"request_p99_us\", \"request_max_us\",
          \"requests\", \"rtt_us\", \"goal_p50_us\", \"goal_p99_us\", \"payload_bytes\", \"bytes_sent\",
          \"migrate_s\", \"link_mbps\", \"efficiency\", \"efficiency_measured\", \"precopy_rounds\",
          \"precopy_remainder_pages\", \"precopy_converged\", \"precopy_downtime_ms\",
          \"postcopy_downtime_ms\",
          \"app_downtime_ms_1g\", \"app_downtime_ms_4g\", \"app_stopcopy_ms_1g\", \"app_stopcopy_ms_4g\",
          \"touch_p50_us\", \"touch_p99_us\", \"touch_max_us\", \"touches\", \"rtt_loaded_us\"):
    assert num(k), (k, d.get(k))
# every part runs --reps times: medians with their range
for k in (\"downtime_ms_1g\", \"downtime_ms_4g\", \"stopcopy_ms_1g\", \"stopcopy_ms_4g\",
          \"app_downtime_ms_1g\", \"app_downtime_ms_4g\", \"app_stopcopy_ms_1g\", \"app_stopcopy_ms_4g\",
          \"request_p50_us\", \"request_p99_us\", \"request_max_us\", \"rtt_us\", \"rtt_loaded_us\",
          \"touch_p50_us\", \"touch_p99_us\", \"touch_max_us\", \"migrate_s\", \"link_mbps\",
          \"precopy_rounds\", \"precopy_remainder_pages\", \"precopy_downtime_ms\", \"postcopy_downtime_ms\"):
    assert num(k + \"_min\") and num(k + \"_max\"), k
    assert d[k + \"_min\"] <= d[k] <= d[k + \"_max\"], k
for k in (\"goal_a_met\", \"goal_b_met\", \"goal_c_met\", \"goal_d_met\", \"goal_met\"):
    assert isinstance(d[k], bool), k
assert d[\"quick\"] is True and d[\"size_4g\"] == 4 * d[\"size_1g\"]
for k in (\"downtime_ms_1g\", \"downtime_ms_4g\", \"stopcopy_ms_1g\", \"stopcopy_ms_4g\",
          \"precopy_downtime_ms\", \"postcopy_downtime_ms\", \"migrate_s\", \"link_mbps\",
          \"app_downtime_ms_1g\", \"app_downtime_ms_4g\", \"app_stopcopy_ms_1g\", \"app_stopcopy_ms_4g\"):
    assert d[k] > 0, k
# the application downtime is expected to exceed the library downtime, but they
# are taken at other points of the same runs: only positive, checked above
assert abs(d[\"downtime_flat\"] - d[\"downtime_ms_4g\"] / d[\"downtime_ms_1g\"]) < 0.01 * d[\"downtime_flat\"] + 0.002
assert d[\"downtime_ratio\"] == d[\"downtime_ratio_4g\"]
assert d[\"reps\"] == 2
for k in (\"downtime_ms_1g\", \"downtime_ms_4g\"):
    assert 0 < d[k + \"_min\"] <= d[k] <= d[k + \"_max\"], k
# (b): pages were requested, and the relay delayed each way by 1 ms
assert d[\"requests\"] >= 1 and 0 < d[\"request_p50_us\"] <= d[\"request_p99_us\"] <= d[\"request_max_us\"]
assert d[\"rtt_us\"] >= 2000, d[\"rtt_us\"]
assert d[\"rtt_loaded_us\"] >= 2000, d[\"rtt_loaded_us\"]
# the destination application, timed per access: some faulted through the relay (>= 2 ms)
assert d[\"touches\"] >= d[\"requests\"] and 0 < d[\"touch_p50_us\"] <= d[\"touch_p99_us\"] <= d[\"touch_max_us\"]
assert d[\"touch_max_us\"] >= 2000, d[\"touch_max_us\"]
assert d[\"goal_p50_us\"] == round(3 * d[\"rtt_us\"] + 100, 1) or abs(d[\"goal_p50_us\"] - 3 * d[\"rtt_us\"] - 100) < 1
# (c): every page incompressible, no zero page elided; the wire carries headers too
assert d[\"payload_bytes\"] == 64 << 20 and d[\"bytes_sent\"] > d[\"payload_bytes\"]
# against the nominal rate, which tbf enforces; the measured link is a short
# probe on a machine that may be busy: only positive
assert 0 < d[\"efficiency\"] <= 1.5 and d[\"efficiency_measured\"] > 0
# (d)
assert d[\"precopy_rounds\"] >= 1 and d[\"precopy_converged\"] in (0, 1)
" "$T/out" || { cat "$T/out" >&2; false; }'
ok nothing-left '! pgrep -f "$F bench migrate" > /dev/null'

# Interrupted half-way: the namespaces' holders and the workers die with it.
"$F" bench migrate --quick --part a > /dev/null 2>&1 &
pid=$!
sleep 1
kill -TERM $pid
wait $pid
rc=$?
ok interrupted-exit-143 '[ $rc = 143 ]'
for _ in $(seq "$(t_scale 100)"); do pgrep -f "$F bench migrate" > /dev/null || break; sleep 0.05; done
ok interrupted-nothing-left '! pgrep -f "$F bench migrate" > /dev/null'
check help 0 "$F" bench migrate --help
has help-names-keys "$T/out" "downtime_ratio"
check bad-part 2 "$F" bench migrate --part e
check bad-reps 2 "$F" bench migrate --reps 0
check reps-no-value 2 "$F" bench migrate --json --reps
check bad-option 2 "$F" bench migrate --bogus
summary
