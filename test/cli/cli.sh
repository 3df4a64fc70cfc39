#!/bin/bash
# The faultline command, end to end: exit codes, outputs, damaged images.
# Usage: cli.sh FAULTLINE_BINARY
set -u
F=$1
T=$(mktemp -d /tmp/fl-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=cli

# built PART: is the optional part (tls, redis, lz4) in this build? The
# CLI says so itself ("optional parts: +tls -redis +lz4"); a part that is
# out gets its "built without" cases instead of the ones that use it.
built() { "$F" --version | grep -q -- " +$1\( \|\$\)"; }

# harness.sh's t_scale: FAULTLINE_TIMEOUT_SCALE scales the shell tests' deadlines
ok t-scale-default '[ "$(FAULTLINE_TIMEOUT_SCALE= t_scale 400)" = 400 ]'
ok t-scale-factor '[ "$(FAULTLINE_TIMEOUT_SCALE=2.5 t_scale 401)" = 1003 ]'
ok t-scale-below-one '[ "$(FAULTLINE_TIMEOUT_SCALE=0.5 t_scale 400)" = 400 ]'
ok t-scale-not-a-number '[ "$(FAULTLINE_TIMEOUT_SCALE=fast t_scale 400)" = 400 ]'
# harness.sh's skip_case: a skip for this machine is a SKIP line, and a FAIL
# under FAULTLINE_REQUIRE_FEATURES (what tools/check.sh sets)
skip_line() {
	FAULTLINE_REQUIRE_FEATURES=$1 FL_TEST_RESULTS= bash -c '. "$1"; T_PROG=p; skip_case c "no root"' \
		sh "$(dirname "$0")/../harness/harness.sh" 2> /dev/null
}
ok skip-case-plain '[ "$(skip_line "")" = "SKIP p/c" ]'
ok skip-case-strict-kernel '[ "$(skip_line kernel)" = "FAIL p/c" ]'
ok skip-case-strict-all '[ "$(skip_line all)" = "FAIL p/c" ]'

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
# capabilities: every one named with its mode; "fallbacks" lists exactly those
# not native; a kernel lacking nothing has none
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
caps = d["capabilities"]
assert len(caps) == 9 and all(c["mode"] in ("native", "fallback", "unavailable") for c in caps), caps
assert d["fallbacks"] == [c["name"] for c in caps if c["mode"] != "native"], d["fallbacks"]
assert all((c["mode"] == "native") == (c["lacking"] is None) for c in caps), caps
if d["missing"] == 0 and d["masked_count"] == 0:
    assert d["fallbacks"] == [], d["fallbacks"]' "$T/out" \
	&& result PASS check-json-capabilities || result FAIL check-json-capabilities
# with the features newer than 6.1 masked: the 6.1 fallbacks, by name
FAULTLINE_MASK_FEATURES=new check check-masked-json 0 "$F" check --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
modes = {c["name"]: c for c in d["capabilities"]}
assert d["fallbacks"] == ["write watches", "live snapshots", "clones and resets", "poison on failure",
                          "UFFDIO_MOVE", "faultlined"], d["fallbacks"]
assert modes["write watches"]["backend"].startswith("synchronous uffd WP"), modes["write watches"]
assert "wp_async" in modes["write watches"]["lacking"].split(","), modes["write watches"]
assert modes["poison on failure"]["backend"].startswith("SIGBUS sent to the faulting thread"), modes["poison on failure"]
assert modes["UFFDIO_MOVE"]["mode"] == "unavailable"
assert "continue_mode_wp" in modes["clones and resets"]["lacking"].split(","), modes["clones and resets"]
assert "no first-write tracking" in modes["clones and resets"]["backend"], modes["clones and resets"]
for n in ("lazy regions (MISSING)", "MINOR regions (memfd, hugetlbfs)", "working sets"):
    assert modes[n]["mode"] == "native", modes[n]' "$T/out" \
	&& result PASS check-masked-fallbacks || result FAIL check-masked-fallbacks
# tools/check.sh's summary line naming what the kernel lacks (kernel-lacks.py):
# from fixed documents, the kernel's own answer ("kernel"), not the mask's
lacks() { python3 "$(dirname "$0")/../../tools/kernel-lacks.py"; }
ok kernel-lacks-some '[ "$(echo '"'"'{"kernel": "6.1.0-28-amd64", "features": [
	{"name": "wp", "kernel": true, "masked": false}, {"name": "wp_async", "kernel": false, "masked": false},
	{"name": "poison", "kernel": true, "masked": true}, {"name": "move", "kernel": false, "masked": false}]}'"'"' | lacks)" \
	= "kernel 6.1.0-28-amd64: lacks wp_async,move (their cases skip)" ]'
ok kernel-lacks-none '[ "$(echo '"'"'{"kernel": "6.18.1", "features": [{"name": "wp", "kernel": true},
	{"name": "move", "kernel": true, "masked": true}]}'"'"' | lacks)" = "kernel 6.18.1: has every feature faultline knows (2)" ]'
ok kernel-lacks-garbage '[ "$(echo "faultline: check: oops" | lacks)" \
	= "kernel ?: features not probed (faultline check --json failed)" ]'
FAULTLINE_MASK_FEATURES=new "$F" check --json 2> /dev/null | lacks > "$T/lacks"
has kernel-lacks-this-kernel "$T/lacks" "^kernel $(uname -r): \(lacks \|has every feature\)"
FAULTLINE_MASK_FEATURES=new check check-masked-text 0 "$F" check
has check-masked-text-fallback "$T/out" "^write watches  *fallback  *synchronous uffd WP faults"
has check-masked-text-count "$T/out" "6 of 9 capabilities run in fallback mode"
# only CONTINUE's MODE_WP missing (6.1 lacks it, as a mode bit): clones stop
# tracking first writes, and that alone is a fallback (on a kernel that
# lacks more, such as 6.1 itself, the row names the others too)
FAULTLINE_MASK_FEATURES=continue_mode_wp check check-mode-wp-json 0 "$F" check --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
modes = {c["name"]: c for c in d["capabilities"]}
c = modes["clones and resets"]
lacking = c["lacking"].split(",")
assert c["mode"] == "fallback" and "continue_mode_wp" in lacking, c
assert lacking == ["continue_mode_wp"] or len(d["fallbacks"]) > 1, c
assert "no first-write tracking" in c["backend"], c' "$T/out" \
	&& result PASS check-mode-wp-clones || result FAIL check-mode-wp-clones

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

# ---- truthful errors: each message names what failed (issue 13 item 6) ----
check create-from-dir 1 "$F" image create "$T/o.img" --from "$T"
has create-from-dir-names-it "$T/err" "faultline: $T: is a directory"
check create-parent-missing 1 "$F" image create "$T/o.img" --pattern 8M --parent "$T/nope.img"
has create-parent-missing-names-it "$T/err" "faultline: --parent $T/nope.img: No such file or directory"
check create-parent-garbage 1 "$F" image create "$T/o.img" --pattern 8M --parent "$T/m.img"
has create-parent-garbage-names-it "$T/err" "faultline: --parent $T/m.img: not a faultline image"
check create-parent-mismatch 1 "$F" image create "$T/o.img" --pattern 4M --parent "$T/a.img"
has create-parent-mismatch-says "$T/err" "faultline: --parent $T/a.img: its layout (region 0 of 8 MiB) does not match the new image (4 MiB)"
[ ! -e "$T/o.img" ] && result PASS create-refused-writes-nothing || result FAIL create-refused-writes-nothing
mkdir "$T/orphan"
cp "$T/a.img" "$T/orphan/p.img"
check create-delta 0 "$F" image create "$T/orphan/delta.img" --from "$T/a.raw" --parent "$T/orphan/p.img"
check create-delta2 0 "$F" image create "$T/orphan/delta2.img" --from "$T/a.raw" --parent "$T/orphan/delta.img"
rm "$T/orphan/p.img"
check info-grandparent-missing 1 "$F" image info "$T/orphan/delta2.img"
has info-grandparent-missing-names-it "$T/err" "delta2.img: $T/orphan/p.img, an image in its parent chain (2 levels up), is missing"
check info-parent-missing 1 "$F" image info "$T/orphan/delta.img"
has info-parent-missing-names-it "$T/err" "delta.img: its parent image $T/orphan/p.img is missing"
check info-dir 1 "$F" image info "$T"
has info-dir-says "$T/err" "faultline: $T: is a directory, not an image"
check record-no-region 1 "$F" image record "$T/a.img" --region 3 -o "$T/r.ws"
has record-no-region-says "$T/err" "a.img: no region 3 (the image has 1"
check serve-dir 1 "$F" serve --listen 127.0.0.1:0 "$T"
has serve-dir-says "$T/err" "serve: $T: is a directory, not an image"
# serve --writable: a raw file whose size is whole pages (the round trip
# through a remote store is test/net/write.c's cli-serve-writable)
head -c 5000 /dev/zero > "$T/odd.raw"
check serve-writable-odd-size 1 "$F" serve --writable --listen 127.0.0.1:0 "$T/odd.raw"
has serve-writable-odd-size-says "$T/err" "not a regular file whose size is a nonzero multiple of 4096"
check serve-writable-missing 1 "$F" serve --writable --listen 127.0.0.1:0 "$T/nope.raw"
has serve-writable-missing-says "$T/err" "serve: --writable $T/nope.raw: No such file or directory"
check serve-writable-verify 2 "$F" serve --writable --verify --listen 127.0.0.1:0 "$T/odd.raw"
check serve-unresolvable-host 1 "$F" serve --listen no-such-host.invalid:0 "$T/a.img"
has serve-unresolvable-host-says "$T/err" "the host 'no-such-host.invalid' cannot be resolved"
check serve-tls-cert-missing 1 "$F" serve --listen 127.0.0.1:0 --tls-cert "$T/nocert.pem" --tls-key "$T/a.raw" "$T/a.img"
has serve-tls-cert-missing-names-it "$T/err" "serve: --tls-cert $T/nocert.pem: No such file or directory"
check serve-tls-key-missing 1 "$F" serve --listen 127.0.0.1:0 --tls-cert "$T/a.raw" --tls-key "$T/nokey.pem" "$T/a.img"
has serve-tls-key-missing-names-it "$T/err" "serve: --tls-key $T/nokey.pem: No such file or directory"
if built tls; then
	echo junk > "$T/junk.pem"
	check serve-tls-garbage 1 "$F" serve --listen 127.0.0.1:0 --tls-cert "$T/junk.pem" --tls-key "$T/junk.pem" "$T/a.img"
	has serve-tls-garbage-names-it "$T/err" "serve: --tls-cert $T/junk.pem / --tls-key $T/junk.pem: not a usable PEM certificate"
fi

# ---- sizes refused before anything is allocated (item 5) ----
check create-100T 1 "$F" image create "$T/huge.img" --pattern 100T
has create-100T-says "$T/err" "huge.img: an image of 100 TiB \(needs a page index of .* in memory\|does not fit: .* free\)"
# more than the disk holds, with an index that fits in memory: on $T, or
# on /dev/shm (a tmpfs of half the memory) when $T's disk is too large
mem=$(awk '/^MemTotal:/ { printf "%d", $2 * 1024 }' /proc/meminfo)
tested_free=0
for d in "$T" /dev/shm; do
	[ -d "$d" ] && [ -w "$d" ] || continue
	avail=$(df --output=avail -B1 "$d" | tail -1)
	big=$(( (avail * 2 / 4096 + 1) * 4096 ))
	[ $(( big / 4096 * 24 )) -lt $(( mem / 2 )) ] || continue
	check create-past-free-space 1 "$F" image create "$d/fl-cli-huge.$$.img" --pattern "$big"
	has create-past-free-space-says "$T/err" "fl-cli-huge.$$.img: an image of .* does not fit: .* free on the filesystem of $d"
	ls -A "$d" | grep -q "fl-cli-huge\.$$" && result FAIL create-past-free-space-no-file \
		|| result PASS create-past-free-space-no-file
	tested_free=1
	break
done
[ "$tested_free" = 1 ] || skip_case create-past-free-space "no filesystem small enough to test the free-space check"
ls -A "$T" | grep -q '^\.huge\.img\.tmp\.' && result FAIL create-huge-no-tmp || result PASS create-huge-no-tmp
[ ! -e "$T/huge.img" ] && result PASS create-huge-no-output || result FAIL create-huge-no-output

# ---- interrupted commands leave nothing behind (item 3) ----
# wait_for COND...: poll a shell condition for up to 20 s
wait_for() { t_poll 400 eval "$1"; }
# Background commands are started with job control on (set -m): each is then
# the leader of a process group of its own, which holds every process it
# starts (found with pgrep -g even once orphaned), and SIGINT is not ignored
# in it as it is in a shell's background job without job control.
# image create: the writer's hidden, pre-allocated temporary file goes
mkdir "$T/int"
set -m
"$F" image create "$T/int/big.img" --pattern 2G > /dev/null 2>&1 &
pid=$!
set +m
wait_for 'ls -A "$T/int" | grep -q "^\.big\.img\.tmp\." && [ "$(du -k "$T"/int/.big.img.tmp.* 2>/dev/null | cut -f1 | head -1)" -gt 0 ] 2>/dev/null'
kill -INT "$pid"; wait "$pid"; rc=$?
[ "$rc" = 130 ] && result PASS create-sigint-exit || { echo "# create-sigint-exit: exit $rc" >&2; result FAIL create-sigint-exit; }
[ -z "$(ls -A "$T/int")" ] && result PASS create-sigint-no-tmp || { echo "# left: $(ls -A "$T/int")" >&2; result FAIL create-sigint-no-tmp; }
# image export: a corrupt page leaves no output, and an older file stays as it was
rm -f "$T/d.raw"
check export-corrupt-no-output 1 "$F" image export "$T/d.img" -o "$T/d.raw"
[ ! -e "$T/d.raw" ] && result PASS export-corrupt-leaves-nothing || result FAIL export-corrupt-leaves-nothing
echo old > "$T/d.raw"
check export-corrupt-keeps-old 1 "$F" image export "$T/d.img" -o "$T/d.raw"
[ "$(cat "$T/d.raw")" = old ] && result PASS export-corrupt-old-intact || result FAIL export-corrupt-old-intact
ls -A "$T" | grep -q '^\.d\.raw\.tmp\.' && result FAIL export-corrupt-no-tmp || result PASS export-corrupt-no-tmp
check export-devnull 0 "$F" image export "$T/a.img" -o /dev/null
# a full disk: a 1 MiB tmpfs (a mount namespace of its own: needs root)
mkdir "$T/full"
if [ "$(id -u)" = 0 ] && unshare -m true 2> /dev/null; then
	unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs "$1" && echo old > "$1/x.raw" &&
		{ "$2" image export "$3" -o "$1/x.raw" 2> "$1/../full.err"; echo "rc=$?"; cat "$1/x.raw"; ls -A "$1"; }' \
		sh "$T/full" "$F" "$T/a.img" > "$T/full.out"
	[ "$(tr '\n' ' ' < "$T/full.out")" = "rc=1 old x.raw " ] && result PASS export-enospc-old-intact \
		|| { echo "# export-enospc: $(tr '\n' ' ' < "$T/full.out")" >&2; result FAIL export-enospc-old-intact; }
	has export-enospc-says "$T/full.err" "No space left on device"
else
	skip_case export-enospc-old-intact "not root or no mount namespaces (a 1 MiB tmpfs for a full disk)"
fi
# image export interrupted: no partial output, the older file intact
check create-export-src 0 "$F" image create "$T/int/src.img" --pattern 1G
echo old > "$T/int/out.raw"
set -m
"$F" image export "$T/int/src.img" -o "$T/int/out.raw" > /dev/null 2>&1 &
pid=$!
set +m
wait_for 'ls -A "$T/int" | grep -q "^\.out\.raw\.tmp\."'
kill -TERM "$pid"; wait "$pid"; rc=$?
[ "$rc" = 143 ] && result PASS export-sigterm-exit || { echo "# export-sigterm-exit: exit $rc" >&2; result FAIL export-sigterm-exit; }
[ "$(cat "$T/int/out.raw")" = old ] && result PASS export-sigterm-old-intact || result FAIL export-sigterm-old-intact
ls -A "$T/int" | grep -q '^\.out\.raw\.tmp\.' && result FAIL export-sigterm-no-tmp || result PASS export-sigterm-no-tmp
rm -f "$T/int/src.img" "$T/int/out.raw"
# demo: its scratch directory and every process it started go
mkdir "$T/demo"
set -m
TMPDIR="$T/demo" "$F" demo --size 64M --threads 2 --dir "$T/demo" > "$T/demo.out" 2>&1 &
pid=$!
set +m
if wait_for 'pgrep -g "$pid" -x "faultlined|redis-server" > /dev/null'; then
	kill -INT "$pid"; wait "$pid"; rc=$?
	[ "$rc" = 130 ] && result PASS demo-sigint-exit || { echo "# demo-sigint-exit: exit $rc" >&2; result FAIL demo-sigint-exit; }
	wait_for '! pgrep -g "$pid" > /dev/null' && result PASS demo-sigint-no-orphans \
		|| { echo "# demo left: $(pgrep -a -g "$pid")" >&2; result FAIL demo-sigint-no-orphans; }
	[ -z "$(ls -A "$T/demo")" ] && result PASS demo-sigint-no-scratch \
		|| { echo "# demo left: $(ls -A "$T/demo")" >&2; result FAIL demo-sigint-no-scratch; }
else
	kill -KILL "$pid" 2>/dev/null; wait "$pid"
	echo "# demo started no process: $(tail -3 "$T/demo.out")" >&2
	result FAIL demo-sigint-started
fi
# bench clone: its images (257 MiB and more) and its worker processes go
mkdir "$T/bc"
set -m
TMPDIR="$T/bc" "$F" bench clone --reps 1 > /dev/null 2>&1 &
pid=$!
set +m
# once its scratch directory holds an image and it has started workers
if wait_for '[ -n "$(ls -A "$T"/bc/faultline-bench-clone-* 2>/dev/null)" ] && pgrep -g "$pid" | grep -qvx "$pid"'; then
	kill -TERM "$pid"; wait "$pid"; rc=$?
	[ "$rc" = 143 ] && result PASS bench-clone-sigterm-exit || { echo "# bench-clone-sigterm-exit: exit $rc" >&2; result FAIL bench-clone-sigterm-exit; }
	wait_for '! pgrep -g "$pid" > /dev/null' && result PASS bench-clone-sigterm-no-orphans \
		|| { echo "# bench clone left: $(pgrep -a -g "$pid")" >&2; result FAIL bench-clone-sigterm-no-orphans; }
	[ -z "$(ls -A "$T/bc")" ] && result PASS bench-clone-sigterm-no-scratch \
		|| { echo "# bench clone left: $(ls -AR "$T/bc")" >&2; result FAIL bench-clone-sigterm-no-scratch; }
else
	kill -KILL "$pid" 2>/dev/null; wait "$pid"
	result FAIL bench-clone-sigterm-started
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
	for _ in $(seq $(t_scale 200)); do
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
	skip_case stats "faultlined not given (\$FAULTLINED, which meson sets): no stats or bench daemon cases"
fi

# ---- the CLI's default deadlines scale (FAULTLINE_TIMEOUT_SCALE) ----
# A listener that never accepts: the kernel completes the TCP handshake and
# no page server ever speaks, so image restore gives up after its default
# --timeout, 5 s times the scale. The command runs at 1.2 times the
# suite's own scale: it must wait at least that scaled default, longer than
# the default at the suite's scale, which a CLI ignoring the variable
# would not.
python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(int(sys.argv[1]))
' "$(t_scale 120)" > "$T/mute.port" &
mute_pid=$!
for _ in $(seq $(t_scale 200)); do [ -s "$T/mute.port" ] && break; sleep 0.05; done
cmd_scale=$(awk -v ms="$(t_scale 1000)" 'BEGIN { print 1.2 * ms / 1000 }')
want_ms=$(FAULTLINE_TIMEOUT_SCALE=$cmd_scale t_scale 5000)
t0=$(date +%s%N)
FAULTLINE_TIMEOUT_SCALE=$cmd_scale check restore-timeout-scaled 1 timeout "$(t_scale 60)" \
	"$F" image restore --from "tcp://127.0.0.1:$(cat "$T/mute.port")" -o "$T/mute.raw"
took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill "$mute_pid" 2> /dev/null; wait "$mute_pid" 2> /dev/null
has restore-timeout-scaled-says "$T/err" "no answer in time"
echo "# restore-timeout-scaled: gave up after $took_ms ms at scale $cmd_scale (scaled default $want_ms ms)" >&2
ok restore-timeout-scaled-waits "[ $took_ms -ge $want_ms ] && [ $took_ms -lt $((want_ms + $(t_scale 5000))) ]"

summary
