#!/bin/bash
# The faultline command, end to end: exit codes, outputs, damaged images.
# Usage: cli.sh FAULTLINE_BINARY
set -u
F=$1
T=$(mktemp -d /tmp/fl-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 skip=0
result() {
	local verdict=$1 name=$2
	echo "$verdict cli/$name"
	[ -n "${FL_TEST_RESULTS:-}" ] && echo "$verdict cli/$name" >> "$FL_TEST_RESULTS"
	if [ "$verdict" = PASS ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
}
check() { # name, expected exit code, command...
	local name=$1 want=$2; shift 2
	"$@" > "$T/out" 2> "$T/err"
	local rc=$?
	if [ "$rc" = "$want" ]; then result PASS "$name"
	else echo "# $name: exit $rc, want $want; stderr: $(head -c 300 "$T/err")" >&2; result FAIL "$name"; fi
}
has() { # name, file, pattern
	if grep -q -- "$3" "$2"; then result PASS "$1"; else echo "# $1: no '$3' in $2" >&2; result FAIL "$1"; fi
}

# built PART: is the optional part (tls, redis, lz4) in this build? The
# CLI says so itself ("optional parts: +tls -redis +lz4"); a part that is
# out gets its "built without" cases instead of the ones that use it.
built() { "$F" --version | grep -q -- " +$1\( \|\$\)"; }

check help 0 "$F" --help
has help-lists-image "$T/out" "image"
# every benchmark is listed in the top-level help and documented in faultline(1)
"$F" bench --help > "$T/bench-help"
benches=$(sed -n '/^Benchmarks:/,/^$/s/^  \([a-z]\+\) .*/\1/p' "$T/bench-help")
[ -n "$benches" ] && result PASS bench-help-lists || result FAIL bench-help-lists
man1=$(dirname "$0")/../../man/faultline.1
for b in $benches; do
	has "help-lists-bench-$b" "$T/out" "$b"
	has "man-documents-bench-$b" "$man1" "^\.SS \"faultline bench $b"
done
# each image subcommand has its own --help
for sub in create info verify diff export push record restore; do
	check "image-$sub-help" 0 "$F" image "$sub" --help
	has "image-$sub-help-own" "$T/out" "faultline image $sub"
done
check version 0 "$F" --version
has version-optional-parts "$T/out" "optional parts: [-+]tls [-+]redis [-+]lz4"
check no-command 2 "$F"
check unknown-command 2 "$F" frobnicate
check check-text 0 "$F" check
has check-lists-poison "$T/out" "poison"
check check-json 0 "$F" check --json
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" && result PASS check-json-parses || result FAIL check-json-parses
python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["built_with"]; assert sorted(b) == ["lz4", "redis", "tls"]' "$T/out" \
	&& result PASS check-json-built-with || result FAIL check-json-built-with

check create-pattern 0 "$F" image create "$T/a.img" --pattern 8M --zero-pages
check info 0 "$F" image info "$T/a.img"
has info-pages "$T/out" "2048"
check info-json 0 "$F" image info --json "$T/a.img"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["pages_total"]==2048 and d["pages_zero"]>0' "$T/out" \
	&& result PASS info-json-fields || result FAIL info-json-fields
check verify-ok 0 "$F" image verify "$T/a.img"
check export 0 "$F" image export "$T/a.img" -o "$T/a.raw"
[ "$(stat -c %s "$T/a.raw")" = 8388608 ] && result PASS export-size || result FAIL export-size
if built lz4; then
	check create-from-file 0 "$F" image create "$T/b.img" --from "$T/a.raw" --lz4
else
	check create-lz4-not-built 1 "$F" image create "$T/b.img" --from "$T/a.raw" --lz4
	has create-lz4-not-built-says "$T/err" "built without LZ4 support (-Dlz4=disabled)"
	check create-from-file 0 "$F" image create "$T/b.img" --from "$T/a.raw"
fi
check diff-same-content 0 "$F" image diff "$T/a.img" "$T/b.img"
# an incremental image of a changed file holds only the changed page
printf 'changed' | dd of="$T/a.raw" bs=1 seek=5000 conv=notrunc 2>/dev/null
check create-incremental 0 "$F" image create "$T/c.img" --from "$T/a.raw" --parent "$T/a.img"
check info-incremental 0 "$F" image info --json "$T/c.img"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["pages_data"]==1 and d["chain_depth"]==1 and d["parent"]["pages_total"]==2048' "$T/out" \
	&& result PASS incremental-holds-one-page || result FAIL incremental-holds-one-page
check diff-differs 1 "$F" image diff "$T/a.img" "$T/c.img"
has diff-counts "$T/out" "1 of 2048 pages differ"
check export-chain 0 "$F" image export "$T/c.img" -o "$T/c.raw"
cmp -s "$T/c.raw" "$T/a.raw" && result PASS export-chain-bytes || result FAIL export-chain-bytes
# damage: a data byte (verify says corrupt), a header byte (open refuses), wrong magic
cp "$T/a.img" "$T/d.img"
printf 'X' | dd of="$T/d.img" bs=1 seek=20000 conv=notrunc 2>/dev/null
check verify-corrupt-data 1 "$F" image verify "$T/d.img"
has verify-says-corrupt "$T/err" "corrupt"
# a damaged copy keeps its original's content id: diff must still see it
check diff-corrupt-copy 1 "$F" image diff "$T/a.img" "$T/d.img"
has diff-corrupt-copy-says "$T/out" "corrupt"
has diff-same-says-checked "$T/out" "pages differ"
check diff-self-identical 0 "$F" image diff "$T/a.img" "$T/a.img"
has diff-identical-says "$T/out" "identical: 2048 pages, every one read and checked"
check export-corrupt-data 1 "$F" image export "$T/d.img" -o "$T/d.raw"
cp "$T/a.img" "$T/h.img"
printf 'X' | dd of="$T/h.img" bs=1 seek=300 conv=notrunc 2>/dev/null
check info-corrupt-header 1 "$F" image info "$T/h.img"
has info-says-corrupt "$T/err" "corrupt image"
printf 'NOTANIMAGE' > "$T/m.img"; head -c 8192 /dev/zero >> "$T/m.img"
check info-not-an-image 1 "$F" image info "$T/m.img"
has info-says-not-image "$T/err" "not a faultline image"
head -c 5000 "$T/a.img" > "$T/t.img"
check info-truncated 1 "$F" image info "$T/t.img"
check info-missing 1 "$F" image info "$T/nope.img"
check create-bad-args 2 "$F" image create "$T/x.img"
check create-both-sources 2 "$F" image create "$T/x.img" --pattern 1M --from "$T/a.raw"
check image-unknown 2 "$F" image frobnicate
[ ! -e "$T/x.img" ] && result PASS no-output-on-usage-error || result FAIL no-output-on-usage-error
check serve-help 0 "$F" serve --help
check serve-no-listen 2 "$F" serve "$T/a.img"
if ! built tls; then
	check serve-tls-not-built 1 "$F" serve --listen 127.0.0.1:0 \
		--tls-psk node:000102030405060708090a0b0c0d0e0f "$T/a.img"
	has serve-tls-not-built-says "$T/err" "built without TLS support (-Dtls=disabled)"
fi
if ! built redis; then
	check push-not-built 1 "$F" image push "$T/a.img" redis://127.0.0.1:1/x
	has push-not-built-says "$T/err" "built without Redis support (-Dredis=disabled)"
fi

# faultline stats against a real faultlined ($FAULTLINED, set by meson)
check stats-help 0 "$F" stats --help
check stats-extra-arg 2 "$F" stats extra
check stats-unknown-option 2 "$F" stats --frobnicate
check stats-socket-no-value 2 "$F" stats --socket
check stats-no-daemon 1 "$F" stats --socket "$T/nothing.sock"
has stats-no-daemon-says "$T/err" "no daemon there"
: > "$T/not-a-socket"
check stats-not-a-socket 1 "$F" stats --socket "$T/not-a-socket"
FLD=${FAULTLINED:-}
if [ -n "$FLD" ] && [ -x "$FLD" ]; then
	mkdir -p "$T/fld/images"
	"$FLD" --socket "$T/fld/sock" --images "$T/fld/images" 2> "$T/fld/log" &
	fld_pid=$!
	trap 'kill "$fld_pid" 2>/dev/null; wait "$fld_pid" 2>/dev/null; rm -rf "$T"' EXIT
	for _ in $(seq 200); do
		"$F" stats --socket "$T/fld/sock" --json > /dev/null 2>&1 && break
		kill -0 "$fld_pid" 2>/dev/null || break
		sleep 0.05
	done
	check stats-text 0 "$F" stats --socket "$T/fld/sock"
	has stats-text-daemon "$T/out" "faultlined .* pid $fld_pid"
	has stats-text-events "$T/out" "events: fork 0"
	has stats-text-refused "$T/out" "refused 0"
	check stats-json 0 "$F" stats --socket "$T/fld/sock" --json
	[ "$(wc -l < "$T/out")" = 1 ] && result PASS stats-json-one-line || result FAIL stats-json-one-line
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) >= {"daemon", "clients", "unclaimed_forks"}, d.keys()
dm = d["daemon"]
for k in ("pid", "version", "uptime_s", "clients", "faults", "events_fork", "events_remap",
          "events_remove", "events_unmap", "refused", "bad_messages", "resumed",
          "lat_p50_us", "lat_p99_us", "latency_hist_ns"):
    assert k in dm, k
assert dm["pid"] == int(sys.argv[2]) and dm["clients"] == 0 and d["clients"] == []
' "$T/out" "$fld_pid" && result PASS stats-json-keys || result FAIL stats-json-keys
	FAULTLINED_SOCKET="$T/fld/sock" check stats-env-socket 0 "$F" stats --json
	has stats-env-socket-pid "$T/out" "\"pid\":$fld_pid"
	# the benchmark starts its own faultlined ($FAULTLINED) and cleans up
	scratch_before=$(ls -d /tmp/faultline-bench-daemon-* 2>/dev/null)
	check bench-daemon-smoke 0 "$F" bench daemon --json --reps 1 --part a
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("daemon_p50_us", "inproc_p50_us", "ratio", "daemon_p99_us", "inproc_p99_us",
          "ratio_min", "ratio_max", "goal_ratio_met"):
    assert k in d, k
assert d["daemon_p50_us"] > 0 and d["inproc_p50_us"] > 0 and d["ratio"] > 0
assert isinstance(d["goal_ratio_met"], bool) and d["pss_ratio"] is None
' "$T/out" && result PASS bench-daemon-keys || result FAIL bench-daemon-keys
	[ "$(ls -d /tmp/faultline-bench-daemon-* 2>/dev/null)" = "$scratch_before" ] \
		&& result PASS bench-daemon-cleans-up || result FAIL bench-daemon-cleans-up
	check bench-daemon-bad-part 2 "$F" bench daemon --part c
	check bench-daemon-bad-reps 2 "$F" bench daemon --reps 0
	kill "$fld_pid"; wait "$fld_pid"
	check stats-daemon-gone 1 "$F" stats --socket "$T/fld/sock"
	has stats-daemon-gone-says "$T/err" "no daemon there"
else
	echo "# faultlined not given (\$FAULTLINED): skipping the stats and bench daemon cases" >&2
	skip=$((skip + 1))
fi

echo "# cli: $pass passed, $fail failed, $skip skipped" >&2
[ "$fail" = 0 ]
