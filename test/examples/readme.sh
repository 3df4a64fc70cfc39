#!/bin/bash
# The README's C examples compile and run as shown: the write watch of
# "## Write watches" and the snapshot of "## Live snapshots" combined in one
# program (the watch kept until the end), a full then an incremental
# snapshot, each returning 0.
# Usage: readme.sh README CC INCLUDE_DIRS LIBFAULTLINE_SO SANITIZE
# INCLUDE_DIRS is colon-separated (source and build include/).
set -u
README=$1 CC=$2 INC=$3 LIB=$4 SANITIZE=$5
IFS=: read -ra INC_DIRS <<<"$INC"
INC_FLAGS=("${INC_DIRS[@]/#/-I}")
LIBDIR=$(dirname "$LIB")
T=$(mktemp -d /var/tmp/fl-readme-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=examples/readme

# block HEADING: the first ```c block after the line HEADING
block() {
	awk -v h="$1" '$0 == h { in_sec = 1; next }
		in_sec && /^```c$/ { in_code = 1; next }
		in_code && /^```$/ { exit }
		in_code { print }' "$README"
}

block "## Write watches" > "$T/watch.inc"
block "## Live snapshots: a key-value server that saves without fork" > "$T/snap.inc"
ok watch-snippet-found '[ -s "$T/watch.inc" ] && grep -q fl_watch_new "$T/watch.inc"'
ok snapshot-snippet-found '[ -s "$T/snap.inc" ] && grep -q fl_snapshot "$T/snap.inc"'
# The snapshot example uses the watch: freed at the end of the program.
grep -v '^fl_watch_free(w);' "$T/watch.inc" > "$T/watch-body.inc"
# Its first lines, up to the first "}" alone on a line, are file scope
# (the pause callback); the rest is statements.
awk 'done { print > body; next } { print > top } /^}$/ { done = 1 }' \
	top="$T/snap-top.inc" body="$T/snap-body.inc" "$T/snap.inc"
sed -i "s|/var/tmp/|$T/|g" "$T/snap-body.inc"
cat > "$T/prog.c" <<EOC
#include <faultline/faultline.h>
#include <faultline/snapshot.h>
#include <faultline/watch.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;

$(cat "$T/snap-top.inc")

int main(void)
{
	size_t heap_len = 8u << 20;
	uint8_t *heap = mmap(NULL, heap_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (heap == MAP_FAILED)
		return 1;
	memset(heap, 0x11, heap_len);
	{
$(cat "$T/watch-body.inc")
	for (size_t off = 0; off < heap_len; off += 16 * 4096)
		heap[off] = 0x22;
$(cat "$T/snap-body.inc")
	if (err) {
		fprintf(stderr, "snapshot: %s\n", strerror(-err));
		return 1;
	}
	fl_watch_free(w);
	}
	return 0;
}
EOC
SAN=()
[ "$SANITIZE" != none ] && SAN=(-fsanitize="$SANITIZE")
if $CC -std=gnu11 -Wall "${SAN[@]}" "${INC_FLAGS[@]}" -o "$T/prog" "$T/prog.c" -L"$LIBDIR" \
	-Wl,-rpath,"$LIBDIR" -lfaultline -lpthread 2> "$T/cc.err"; then
	result PASS compiles
	"$T/prog" > "$T/run.out" 2>&1
	rc=$?
	cat "$T/run.out"
	ok runs '[ $rc = 0 ]'
	ok full-image '[ -s "$T/dump-1.img" ]'
	ok incremental-image '[ -s "$T/dump-2.img" ]'
else
	cat "$T/cc.err" >&2
	echo "# program:" >&2
	cat -n "$T/prog.c" >&2
	result FAIL compiles
fi
summary
