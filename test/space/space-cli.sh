#!/bin/bash
# faultline space, end to end: create, ls, info, commit, versions, fork,
# export (the image verified, served and read back), rm, their --json, and
# what they refuse.
# Usage: space-cli.sh FAULTLINE_BINARY
set -u
F=$1
T=$(mktemp -d /tmp/fl-space-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=space-cli
json() { python3 -c "import json,os,sys; d=json.load(open(sys.argv[1])); assert $1, d" "$T/out"; }

check help 0 "$F" space --help
has help-lists-fork "$T/out" "fork DIR NEWDIR"
check create 0 "$F" space create "$T/a" --name alpha --segment heap:5a0000000000:64M --segment idx:5b0000000000:2M:shmem --json
ok create-json 'json "d[\"name\"] == \"alpha\" and d[\"versions\"] == [1] and len(d[\"segments\"]) == 2 and d[\"segments\"][0][\"base\"] == \"0x5a0000000000\""'
ok create-files '[ -f "$T/a/manifest" ] && [ -f "$T/a/heap.v1.img" ] && [ -f "$T/a/idx.v1.img" ]'
check info 0 "$F" space info "$T/a"
has info-text "$T/out" "segment  heap"
check commit 0 "$F" space commit "$T/a" --json
ok commit-json 'json "d[\"version\"] == 2"'
check versions 0 "$F" space versions "$T/a" --json
ok versions-json 'json "d[\"versions\"] == [1, 2]"'
check fork 0 "$F" space fork "$T/a" "$T/b" --version 1 --json
ok fork-json 'json "d[\"name\"] == \"b\" and d[\"versions\"] == [1]"'
check ls 0 "$F" space ls "$T" --json
ok ls-json 'json "sorted(s[\"name\"] for s in d[\"spaces\"]) == [\"alpha\", \"b\"]"'
# export: one image with no parent, a region per segment, that the image
# tools and the page server take
check help-lists-export 0 "$F" space --help
has help-lists-export-says "$T/out" "export DIR --to FILE"
check export 0 "$F" space export "$T/a" --to "$T/a2.img" --json
ok export-json 'json "d[\"space\"] == \"alpha\" and d[\"version\"] == 2 and d[\"path\"].endswith(\"a2.img\") and [(s[\"name\"], s[\"base\"], s[\"length\"], s[\"mem\"], s[\"pages\"]) for s in d[\"segments\"]] == [(\"heap\", \"0x5a0000000000\", 67108864, \"shmem\", 0), (\"idx\", \"0x5b0000000000\", 2097152, \"shmem\", 0)] and d[\"bytes\"] == os.path.getsize(d[\"path\"])"'
check export-v1 0 "$F" space export "$T/a" --version 1 --to "$T/a1.img"
has export-v1-text "$T/out" "version 1 ->"
check export-verify 0 "$F" image verify "$T/a2.img"
check export-info 0 "$F" image info "$T/a2.img"
has export-info-region1 "$T/out" "region 1  idx"
ok export-info-no-parent '! grep -q "^  parent" "$T/out"'
# served by the page server and read back over TCP, region 1, every page
# compared with the file
"$F" serve "$T/a2.img" --listen 127.0.0.1:0 > "$T/serve.out" 2>&1 &
SERVE=$!
for _ in $(seq "$(t_scale 200)"); do grep -q "listening on" "$T/serve.out" && break; sleep 0.05; done
ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$T/serve.out" | head -1)
check export-served 0 timeout "$(t_scale 60)" "$F" image restore --from "tcp://$ADDR" --region 1 "$T/a2.img"
kill "$SERVE" 2>/dev/null
wait "$SERVE" 2>/dev/null
# a space holding data (the space-graph example's graph): the pages export
# reports are the data pages the image tools count in the file
G=$(dirname "$F")/../examples/space-graph
if [ -x "$G" ]; then
	check graph 0 "$G" --size 8M --dir "$T/g"
	check export-graph 0 "$F" space export "$T/g" --to "$T/g.img" --json
	cp "$T/out" "$T/g.json"
	check export-graph-info 0 "$F" image info "$T/g.img"
	DATA=$(sed -n 's/^  pages *[0-9]*: \([0-9]*\) data.*/\1/p' "$T/out")
	cp "$T/g.json" "$T/out"
	ok export-graph-pages 'json "len(d[\"segments\"]) == 1 and d[\"segments\"][0][\"pages\"] > 0 and d[\"segments\"][0][\"pages\"] == ${DATA:-0}"'
	check export-graph-verify 0 "$F" image verify "$T/g.img"
	# straight to Redis (a redis-server of this test on loopback): the
	# pages read back from there are the exported file's
	if ! "$F" --version | grep -q "+redis"; then
		result SKIP export-redis	# a build without Redis: not this machine's doing
	elif ! command -v redis-server > /dev/null; then
		skip_case export-redis "redis-server not installed (Debian: apt-get install redis-server)"
	else
		RPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		mkdir "$T/redis"
		redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$T/redis" \
			--protected-mode no --daemonize no > "$T/redis/log" 2>&1 &
		REDIS=$!
		for _ in $(seq "$(t_scale 300)"); do
			redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break
			sleep 0.05
		done
		URL="redis://127.0.0.1:$RPORT/space"
		mkdir "$T/scratch"
		TMPDIR=$T/scratch check export-redis 0 "$F" space export "$T/g" --to "$URL" --json
		ok export-redis-json 'json "d[\"path\"] == \"$URL\" and len(d[\"image_id\"]) == 32 and d[\"segments\"][0][\"pages\"] == ${DATA:-0}"'
		ok export-redis-no-temp '[ -z "$(ls -A "$T/scratch")" ]'
		check export-redis-read-back 0 timeout "$(t_scale 60)" "$F" image restore --from "$URL" "$T/g.img"
		# nobody listens on port 1: refused, and the scratch file removed
		TMPDIR=$T/scratch check export-redis-refused 1 "$F" space export "$T/g" --to "redis://127.0.0.1:1/space"
		ok export-redis-refused-no-temp '[ -z "$(ls -A "$T/scratch")" ]'
		kill "$REDIS" 2>/dev/null
		wait "$REDIS" 2>/dev/null
	fi
	# one byte of a data page of the space's image flipped: the space still
	# opens (pages are checked when read), the export reads every page
	# and refuses, leaving nothing
	check export-graph-corrupted 0 python3 - "$(ls "$T"/g/*.v1.img | head -1)" "$T/g.img" <<'PY'
import sys
img, exp = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
# a 4 KiB page of the export (its data is page-aligned) found in the image
for off in range(0, len(exp) - 4096, 4096):
    page = exp[off:off + 4096]
    if page.count(0) < 4000 and img.find(page) > 0:
        at = img.find(page) + 100
        b = bytearray(img)
        b[at] ^= 1
        open(sys.argv[1], 'wb').write(bytes(b))
        sys.exit(0)
sys.exit("no data page of the export found in the image")
PY
	check export-graph-info-opens 0 "$F" space info "$T/g"
	check export-graph-corrupt 1 "$F" space export "$T/g" --to "$T/g2.img"
	has export-graph-corrupt-says "$T/err" "corrupt"
	ok export-graph-corrupt-nothing-left '[ -z "$(ls "$T" | grep g2.img)" ]'
else
	skip_case export-graph "no $G (build the examples)"
fi
cp "$T/a1.img" "$T/a1.copy"
check export-exists 1 "$F" space export "$T/a" --to "$T/a1.img"
has export-exists-says "$T/err" "exists"
ok export-exists-kept 'cmp -s "$T/a1.img" "$T/a1.copy"'
check export-no-version 1 "$F" space export "$T/a" --version 9 --to "$T/a9.img"
has export-no-version-says "$T/err" "no version 9"
ok export-no-version-nothing '[ ! -e "$T/a9.img" ]'
check export-usage 2 "$F" space export "$T/a"
cp "$T/a/idx.v1.img" "$T/idx.copy"
truncate -s 4096 "$T/a/idx.v1.img"
check export-corrupt 1 "$F" space export "$T/a" --version 1 --to "$T/bad.img"
has export-corrupt-says "$T/err" "corrupt"
ok export-corrupt-nothing-left '[ -z "$(ls "$T" | grep bad.img)" ]'
cp "$T/idx.copy" "$T/a/idx.v1.img"
# refusals: each a clear message, exit 1 or 2, nothing created or removed
check create-unaligned 1 "$F" space create "$T/c" --name c --segment h:5a0000000001:1M
has create-unaligned-says "$T/err" "not a multiple of the page size"
ok create-unaligned-nothing-left '[ ! -e "$T/c" ]'
check create-overlap 1 "$F" space create "$T/c" --name c --segment h:5a0000000000:4M --segment i:5a0000200000:4M
has create-overlap-says "$T/err" "overlaps segment h"
check create-exists 1 "$F" space create "$T/a" --name a --segment h:5a0000000000:4M
check create-usage 2 "$F" space create "$T/c" --name c
check fork-no-version 1 "$F" space fork "$T/a" "$T/d" --version 9
ok fork-no-version-nothing-left '[ ! -e "$T/d" ]'
check info-missing 1 "$F" space info "$T/nope"
printf 'x' >> "$T/a/manifest"
check info-corrupt 1 "$F" space info "$T/a"
has info-corrupt-says "$T/err" "manifest"
truncate -s -1 "$T/a/manifest"
check info-repaired 0 "$F" space info "$T/a"
touch "$T/b/notes.txt"
check rm-foreign-file 1 "$F" space rm "$T/b"
ok rm-foreign-file-kept '[ -f "$T/b/manifest" ]'
rm "$T/b/notes.txt"
check rm 0 "$F" space rm "$T/b"
ok rm-gone '[ ! -e "$T/b" ]'
mkdir "$T/plain"
check rm-not-a-space 1 "$F" space rm "$T/plain"
ok rm-not-a-space-kept '[ -d "$T/plain" ]'
check unknown 2 "$F" space frobnicate
# bench space runs at a small size and reports every key (not a
# measurement: benchmarks are not tests)
TMPDIR=$T check bench 0 "$F" bench space --reps 3 --size 8M --json
ok bench-json 'json "all(k in d for k in (\"attach_us_1g\", \"attach_flat\", \"switch_us\", \"pipe_rtt_us\", \"ratio\", \"speedup\", \"traverse_ratio\", \"pss_ratio\", \"pss_ratio_daemon\"))"'
ok bench-cleaned '[ -z "$(ls "$T" | grep fl-bench-space)" ]'
check bench-usage 2 "$F" bench space --part z
summary
