#!/bin/bash
# The faultline command, end to end: exit codes, outputs, damaged images.
# Usage: cli.sh FAULTLINE_BINARY
set -u
F=$1
T=$(mktemp -d /tmp/fl-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
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

check help 0 "$F" --help
has help-lists-image "$T/out" "image"
check version 0 "$F" --version
check no-command 2 "$F"
check unknown-command 2 "$F" frobnicate
check check-text 0 "$F" check
has check-lists-poison "$T/out" "poison"
check check-json 0 "$F" check --json
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" && result PASS check-json-parses || result FAIL check-json-parses

check create-pattern 0 "$F" image create "$T/a.img" --pattern 8M --zero-pages
check info 0 "$F" image info "$T/a.img"
has info-pages "$T/out" "2048"
check info-json 0 "$F" image info --json "$T/a.img"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["pages_total"]==2048 and d["pages_zero"]>0' "$T/out" \
	&& result PASS info-json-fields || result FAIL info-json-fields
check verify-ok 0 "$F" image verify "$T/a.img"
check export 0 "$F" image export "$T/a.img" -o "$T/a.raw"
[ "$(stat -c %s "$T/a.raw")" = 8388608 ] && result PASS export-size || result FAIL export-size
check create-from-file 0 "$F" image create "$T/b.img" --from "$T/a.raw" --lz4
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

echo "# cli: $pass passed, $fail failed, 0 skipped" >&2
[ "$fail" = 0 ]
