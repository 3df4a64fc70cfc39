#!/bin/bash
# examples/kv-server end to end: a background save (live snapshot) while
# clients write, a restart from the image, an incremental save, and the
# fork() mode. Every key written before a save's instant must come back
# with its value; every value must be untorn.
# Usage: kv.sh KV_SERVER KV_LOAD
set -u
S=$1 L=$2
T=$(mktemp -d /var/tmp/fl-kv-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=examples/kv

start() { # extra args...
	# Emptied here, not by the background job's redirection: that happens
	# later, and the loop below could read the previous server's port.
	: > "$T/server.out"
	"$S" --port 0 --arena 64M --dir "$T" "$@" > "$T/server.out" 2> "$T/server.err" &
	pid=$!
	for _ in $(seq $(t_scale 100)); do
		port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/server.out")
		[ -n "$port" ] && return 0
		sleep 0.05
	done
	echo "# server did not start: $(cat "$T/server.err")" >&2
	return 1
}
stop() { kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }
# Pipelined requests from stdin on one connection; replies on stdout.
kv() {
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	local n=0 l r
	while IFS= read -r l; do printf '%s\n' "$l" >&3; n=$((n + 1)); done
	for ((i = 0; i < n; i++)); do IFS= read -r r <&3; echo "$r"; done
	exec 3>&-
}
wait_save() { # prints the DONE line
	local r
	for _ in $(seq $(t_scale 600)); do
		r=$(echo LASTSAVE | kv)
		case "$r" in "+DONE"*) echo "$r"; return 0 ;; "-ERR"*) echo "$r"; return 1 ;; esac
		sleep 0.05
	done
	return 1
}
set_keys() { # prefix count
	for ((i = 0; i < $2; i++)); do echo "SET $1$i val-$1$i"; done | kv | grep -vc '^+OK$'
}
check_keys() { # prefix count -> number of wrong values
	for ((i = 0; i < $2; i++)); do echo "GET $1$i"; done | kv |
		awk -v p="$1" '{ if ($0 != "$val-" p (NR - 1)) bad++ } END { print bad + 0 }'
}
absent_keys() { # prefix count -> number present
	for ((i = 0; i < $2; i++)); do echo "GET $1$i"; done | kv | grep -vc '^-$'
}
untorn() { # prefix count -> number of malformed values among present keys
	for ((i = 0; i < $2; i++)); do echo "GET $1$i"; done | kv |
		awk -v p="$1" '/^\$/ { v = substr($0, 2); k = p (NR - 1); if (v !~ ("^" k ":[0-9]+:" k "$")) bad++ } END { print bad + 0 }'
}

# 1-4 with each kind of tracking: auto (the asynchronous watch and precopy
# saves where the kernel has it) and sync (copy-before-write saves, what a
# 6.1 kernel gets from auto).
for track in auto sync; do
	T_PROG=examples/kv-$track
	# 1. A save while four clients write.
	start --track "$track" || exit 1
	ok tracking-reported 'grep -Eq "tracking $([ "$track" = auto ] && echo "(async|sync)" || echo "$track")\$" "$T/server.out"'
	ok markers-set '[ "$(set_keys m 300)" = 0 ]'
	"$L" --port "$port" --conns 4 --seconds 2 --keys 2000 --prefix b --set-pct 80 --bgsave-at 0.7 > "$T/load.out" 2>&1
	ok load-no-bad-replies '[ $? = 0 ]'
	ok load-bgsave-started 'grep -q "+STARTED" "$T/load.out"'
	done1=$(wait_save)
	ok save-done '[ -n "$done1" ] && [ "${done1#+DONE}" != "$done1" ]'
	img1=$(echo "$done1" | awk '{print $2}')
	ok image-exists '[ -f "$img1" ]'
	# 2. An incremental save of a few more keys.
	ok more-set '[ "$(set_keys n 100)" = 0 ]'
	ok bgsave-incr '[ "$(echo "BGSAVE INCR" | kv | cut -c1-8)" = "+STARTED" ]'
	done2=$(wait_save)
	img2=$(echo "$done2" | awk '{print $2}')
	ok incr-done '[ -f "$img2" ]'
	stop

	# 3. Restart from the full image: markers back, n* absent, b* untorn.
	start --track "$track" --load "$img1" || exit 1
	ok full-markers '[ "$(check_keys m 300)" = 0 ]'
	ok full-no-later-keys '[ "$(absent_keys n 100)" = 0 ]'
	ok full-untorn '[ "$(untorn b 2000)" = 0 ]'
	ok full-has-load-keys '[ "$(absent_keys b 2000)" -gt 0 ]'
	stop
	# 4. From the incremental image (its chain): everything.
	start --track "$track" --load "$img2" || exit 1
	ok incr-markers '[ "$(check_keys m 300)" = 0 ]'
	ok incr-later-keys '[ "$(check_keys n 100)" = 0 ]'
	ok incr-untorn '[ "$(untorn b 2000)" = 0 ]'
	stop

	rm -f "$T"/dump-*.img
done
T_PROG=examples/kv

# 5. The fork() mode, for comparison, round trips too; writes during its
# save are copied by the kernel, and LASTSAVE counts them (pages_cow).
start --fork-save || exit 1
ok fork-set '[ "$(set_keys f 100)" = 0 ]'
"$L" --port "$port" --conns 4 --seconds 2 --keys 2000 --prefix g --set-pct 80 --bgsave-at 0.3 > "$T/load3.out" 2>&1
ok fork-load-bgsave '[ $? = 0 ] && grep -q "+STARTED" "$T/load3.out"'
done3=$(wait_save)
img3=$(echo "$done3" | awk '{print $2}')
ok fork-pages-cow '[ "$(echo "$done3" | awk "{print \$5}")" -gt 0 ]'
ok fork-incr-refused '[ "$(echo "BGSAVE INCR" | kv | cut -c1-4)" = "-ERR" ]'
stop
start --load "$img3" || exit 1
ok fork-restored '[ "$(check_keys f 100)" = 0 ]'
stop

# 6. --arena is bytes (a K/M/G suffix optional), a bad size is refused.
start --arena 16777216 || exit 1
ok arena-bytes 'grep -q ", 16 MiB arena" "$T/server.out"'
stop
"$S" --port 0 --arena 12x --dir "$T" > /dev/null 2> "$T/arena.err"
ok arena-bad '[ $? = 2 ] && grep -q -- "--arena wants a size" "$T/arena.err"'

summary
