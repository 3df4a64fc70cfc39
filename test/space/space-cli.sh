#!/bin/bash
# faultline space, end to end: create, ls, info, commit, versions, fork, rm,
# their --json, and what they refuse.
# Usage: space-cli.sh FAULTLINE_BINARY
set -u
F=$1
T=$(mktemp -d /tmp/fl-space-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=space-cli
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert $1, d" "$T/out"; }

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
ok bench-json 'json "all(k in d for k in (\"attach_us_1g\", \"attach_flat\", \"switch_us\", \"pipe_rtt_us\", \"ratio\", \"speedup\", \"traverse_ratio\", \"pss_ratio\"))"'
ok bench-cleaned '[ -z "$(ls "$T" | grep fl-bench-space)" ]'
check bench-usage 2 "$F" bench space --part z
summary
