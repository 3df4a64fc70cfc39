#!/bin/bash
# examples/kv-server moved to another network namespace while clients
# write: two namespaces joined by a veth pair, the destination
# (kv-server --incoming) in B, the source (with --prefill) in A, kv-load
# --failover --verify writing to the source. The clients run in A, the
# source's namespace: from there both servers are reachable over the one
# veth pair (no routes to set up), and the migration itself, source to
# destination, crosses the veth; the clients' own path to the source is
# A's veth address, so their failover crosses it as well.
#
# For each mode (precopy, postcopy, hybrid, one run each, a 64 MiB arena):
# the source exits 0 with its statistics, every kv-load connection moved
# to the destination and read back every key it wrote (nothing lost, no
# write acknowledged by the source after its pause and missing at the
# destination, no other value), every prefilled key is intact at the
# destination, which reports "migration done" and MIGRATION +DONE.
# Then a migration that cannot connect fails before its switchover: the
# source says why (MIGRATION -ERR) and keeps serving. Then the source is
# killed (SIGKILL) during a postcopy without background push, with the
# destination mid-fetch and a client reading: the destination exits
# non-zero with the cause, and every reply the client got was right (a
# GET gets the right value or a closed connection, never zeros); and the
# destination killed during postcopy: the source exits 1 with the cause.
#
#
# Then what an operator does (faultline is the CLI):
#  - control: `faultline migrate start --control` on the source's control
#    socket (kv-server --control), followed by `faultline migrate watch
#    --json` to its end (exit 0, last state done), under load, and `status
#    --json` on the destination's (role dest, state done).
#  - tls: a PSK key file readable by others is refused at startup; a
#    migration with the same PSK on both ends, and one with X.509 mutual
#    authentication (certtool certificates) complete with every key intact;
#    a mismatched PSK is refused before the switchover (MIGRATION -ERR says
#    TLS refused the credentials) and the source serves on, keys intact;
#    so are a source without a certificate for a destination that requires
#    one (mutual), and plaintext against a PSK.
#  - recover: postcopy over TLS (PSK) through `faultline proxy` (in A, in front of the
#    destination, rate-limited so that pages are still missing), cut twice
#    (SIGUSR1) a moment apart under load: the migration recovers (the
#    source's and the destination's statistics, MIGRATION's +DONE count the
#    recoveries), kv-load --verify passes, every prefilled key is intact.
#  - cancel: `faultline migrate cancel` during a (rate-limited) precopy:
#    watch exits 3, the source serves on with its keys, the destination
#    exits 1.
#  - outage: the proxy killed for 1.5 s, then started again, in a postcopy
#    without push: the destination says it is recovering, answers a key
#    whose page is there, a client asking for keys on missing pages waits,
#    and gets every right answer after the reconnection.
#  - recovery-timeout: the proxy killed mid-postcopy, never restarted, with
#    --migrate-recovery-ms 2000: the destination exits non-zero saying so,
#    and a reader never got a wrong value; the source exits 1.
# KV_MIGRATE_CASES="modes refused kill control tls recover recovery-timeout cancel outage"
# (a subset, space-separated) runs only those; default all.
#
# Skips (77) when network namespaces cannot be made here (not root, no
# ip(8), no netns support); under FAULTLINE_REQUIRE_FEATURES that fails.
# Usage: kv-migrate.sh KV_SERVER KV_LOAD FAULTLINE
set -u
S=$1 L=$2 F=$3
want() { case " ${KV_MIGRATE_CASES:-$1} " in *" $1 "*) return 0 ;; esac; return 1; }
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=examples/kv-migrate

unusable() {
	if t_strict; then
		echo "# $T_PROG: $1 (FAULTLINE_REQUIRE_FEATURES=$FAULTLINE_REQUIRE_FEATURES: a skip is a failure)" >&2
		exit 1
	fi
	echo "# $T_PROG: skipped: $1" >&2
	exit 77
}
[ "$(id -u)" = 0 ] || unusable "not root: network namespaces need CAP_SYS_ADMIN"
command -v ip > /dev/null || unusable "no ip(8) (iproute2)"

# Unique per run (two runs at once, or a namespace left by a killed run);
# interface names stay within 15 characters.
id=$(printf '%x' $(( ((($$ & 0xffff) << 15) | RANDOM) & 0x7fffffff )))
NA=fl-kvmig-a-$id NB=fl-kvmig-b-$id VA=flkva$id VB=flkvb$id
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
A_IP=$NET.1 B_IP=$NET.2
T=$(mktemp -d /var/tmp/fl-kvmig-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done
	ip netns del "$NA" 2> /dev/null
	ip netns del "$NB" 2> /dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$NA" 2> "$T/err" || unusable "ip netns add: $(cat "$T/err")"
ip netns add "$NB" 2> "$T/err" || unusable "ip netns add: $(cat "$T/err")"
ip link add "$VA" type veth peer name "$VB" 2> "$T/err" || unusable "no veth pair: $(cat "$T/err")"
ip link set "$VA" netns "$NA" && ip link set "$VB" netns "$NB" &&
	ip -n "$NA" addr add "$A_IP/24" dev "$VA" && ip -n "$NB" addr add "$B_IP/24" dev "$VB" &&
	ip -n "$NA" link set lo up && ip -n "$NB" link set lo up &&
	ip -n "$NA" link set "$VA" up && ip -n "$NB" link set "$VB" up ||
	{ echo "# $T_PROG: cannot set the veth pair up" >&2; exit 1; }

PREFILL=20000		# keys k0 .. k19999, "k<i>:0:k<i>"
SRC_PORT=7001 DST_PORT=7001 MIG_PORT=7000

# wait_for FILE PATTERN [TRIES of 50 ms]
wait_for() {
	t_poll "${3:-400}" grep -qs -- "$2" "$1" || { echo "# no '$2' in $1: $(tail -c 400 "$1" 2> /dev/null)" >&2; return 1; }
}
# wait_rc PID SECONDS: the exit status in $rc (137: killed at the deadline).
# Polled (a zombie is an exit): a watchdog in the background would keep
# the test's stdout open after the test ends.
wait_rc() {
	for _ in $(seq "$(t_scale $(($2 * 20)))"); do
		case $(cut -d' ' -f3 "/proc/$1/stat" 2> /dev/null) in "" | Z | X) break ;; esac
		sleep 0.05
	done
	kill -9 "$1" 2> /dev/null
	wait "$1" 2> /dev/null
	rc=$?
}
# kvq HOST PORT: pipelined requests from stdin on one connection, from
# namespace A; the replies on stdout.
kvq() {
	# One write, and head(1) reads the replies a buffer at a time (bash's
	# read takes a socket a byte at a time).
	local req n
	req=$(cat)
	n=$(printf '%s\n' "$req" | wc -l)
	ip netns exec "$NA" bash -c '
		exec 3<> "/dev/tcp/$1/$2" || exit 1
		printf "%s\n" "$3" >&3
		timeout 30 head -n "$4" <&3' kvq "$1" "$2" "$req" "$n"
}
# check_first_keys: the first 2000 keys from the destination, served on
# demand, each with its value (result dest-first-keys).
check_first_keys() {
	first=$(for ((i = 0; i < 2000; i++)); do echo "GET k$i"; done | kvq "$B_IP" $DST_PORT |
		awk '{ k = "k" (NR - 1); if ($0 != "$" k ":0:" k) bad++ } END { print bad + 0, NR }')
	ok dest-first-keys '[ "$first" = "0 2000" ]'
}
# start_reader: a reader goes on from key 2000 through the keys, 500 to a
# connection, until the destination is gone; it records every reply with
# its key in $T/reader.out (its pid in rpid). Result reader-started: it
# got to key 2100.
start_reader() {
	ip netns exec "$NA" bash -c '
		for ((b = 2000; b < $3; b += 500)); do
			exec 3<> "/dev/tcp/$1/$2" || exit 0
			for ((i = b; i < b + 500; i++)); do printf "GET k%d\n" $i >&3; done
			for ((i = b; i < b + 500; i++)); do IFS= read -r -t 30 r <&3 || exit 0; echo "$i $r"; done
			exec 3>&-
		done' reader "$B_IP" $DST_PORT $PREFILL > "$T/reader.out" 2> /dev/null &
	rpid=$!
	pids+=("$rpid")
	ok reader-started 'wait_for "$T/reader.out" "^2100 " 400'
}
# check_reader: once the reader ends, every value it got right
# (reader-never-wrong), some (reader-read-some), not all: it stopped with
# the destination (reader-stopped).
check_reader() {
	wait_rc "$rpid" 60
	wrong=$(awk '{ k = "k" $1; if ($2 != "$" k ":0:" k) bad++ } END { print bad + 0 }' "$T/reader.out")
	ok reader-never-wrong '[ "$wrong" = 0 ]'
	ok reader-read-some '[ "$(wc -l < "$T/reader.out")" -gt 0 ]'
	ok reader-stopped '[ "$(wc -l < "$T/reader.out")" -lt $((PREFILL - 2000)) ]'
}
# prefill_wrong HOST PORT: prefilled keys without their value (in batches
# of 2000: the replies of one batch fit the sockets' buffers).
prefill_wrong() {
	local bad=0 b
	for ((b = 0; b < PREFILL; b += 2000)); do
		n=$(for ((i = b; i < b + 2000; i++)); do echo "GET k$i"; done | kvq "$1" "$2" |
			awk -v b="$b" '{ k = "k" (b + NR - 1); if ($0 != "$" k ":0:" k) bad++ } END { print bad + (NR < 2000 ? 2000 - NR : 0) }')
		bad=$((bad + n))
	done
	echo "$bad"
}
start_dest() { # extra args...
	: > "$T/dst.out"
	ip netns exec "$NB" "$S" --listen "$B_IP" --port $DST_PORT --incoming $MIG_PORT --dir "$T" "$@" \
		> "$T/dst.out" 2> "$T/dst.err" &
	dpid=$!
	pids+=("$dpid")
	wait_for "$T/dst.out" "waiting for a migration on $B_IP:$MIG_PORT"
}
start_source() { # extra args...
	: > "$T/src.out"
	ip netns exec "$NA" "$S" --listen "$A_IP" --port $SRC_PORT --arena 64M --prefill $PREFILL --dir "$T" "$@" \
		> "$T/src.out" 2> "$T/src.err" &
	spid=$!
	pids+=("$spid")
	wait_for "$T/src.out" "listening on $A_IP:$SRC_PORT"
}

# kv-load --failover --verify on the source, in the background ($lpid).
start_load() {
	ip netns exec "$NA" "$L" --host "$A_IP" --port $SRC_PORT --failover "$B_IP:$DST_PORT" --conns 4 \
		--seconds 600 --keys 4000 --prefix c --set-pct 80 --verify > "$T/load.out" 2>&1 &
	lpid=$!
	pids+=("$lpid")
}
# Stop it a second later; it must have read back every key it wrote.
check_load() {
	sleep 1
	kill -TERM "$lpid"
	wait_rc "$lpid" 120
	ok load-verified '[ "$rc" = 0 ] && grep -q "verify: [1-9][0-9]* keys read back, 0 missing, 0 with another value" "$T/load.out"'
	[ "$rc" = 0 ] || echo "# kv-load: $(tail -c 800 "$T/load.out")" >&2
	# Every connection moved: its keys were read back from the destination.
	ok load-moved '[ "$(sed -n "s/.* failovers=\([0-9]*\) .*/\1/p" "$T/load.out")" -ge 4 ]'
}

for mode in precopy postcopy hybrid; do
	want modes || break
	T_PROG=examples/kv-migrate-$mode
	start_dest || { result FAIL dest-started; continue; }
	start_source --migrate-to "$B_IP:$MIG_PORT" || { result FAIL source-started; kill -9 "$dpid"; continue; }
	ok source-idle '[ "$(echo MIGRATION | kvq "$A_IP" $SRC_PORT)" = "+IDLE" ]'
	# Four connections, 80 % SET, each its own keys; the migration starts
	# 1.5 s in, the load is stopped (SIGTERM: its report and the final
	# check follow) a second after the migration is over.
	start_load
	sleep 1.5
	reply=$(echo "MIGRATE $mode" | kvq "$A_IP" $SRC_PORT)
	ok migrate-started '[ "$reply" = "+STARTED $mode" ]' || echo "# MIGRATE $mode: '$reply'" >&2
	wait_rc "$spid" 120
	ok source-exit-0 '[ "$rc" = 0 ]'
	[ "$rc" = 0 ] || echo "# source: $(tail -c 600 "$T/src.err")" >&2
	has source-stats "$T/src.out" "migration done ($mode, to $B_IP:$MIG_PORT): downtime_us [0-9]* total_ms [0-9]* rounds"
	src_rounds=$(sed -n 's/.*migration done.* rounds \([0-9]*\) .*/\1/p' "$T/src.out")
	if [ "$mode" = postcopy ]; then
		ok source-no-rounds '[ "$src_rounds" = 0 ]'
	else
		ok source-rounds '[ "${src_rounds:-0}" -ge 1 ]'
	fi
	ok dest-migration-done 'wait_for "$T/dst.out" "migration done ($mode): downtime_us"'
	check_load
	has dest-listening "$T/dst.out" "listening on $B_IP:$DST_PORT"
	ok dest-prefill-intact '[ "$(prefill_wrong "$B_IP" $DST_PORT)" = 0 ]'
	done_reply=$(echo MIGRATION | kvq "$B_IP" $DST_PORT)
	ok dest-migration-reply '[ "$(echo "$done_reply" | awk "{ print \$1, \$4 }")" = "+DONE $src_rounds" ]'
	keys=$(echo INFO | kvq "$B_IP" $DST_PORT | awk '{ print $2 }')
	ok dest-keys '[ "${keys:-0}" -ge $((PREFILL + 1)) ]'
	# The destination is a server like any other now: a full save works.
	ok dest-bgsave '[ "$(echo BGSAVE | kvq "$B_IP" $DST_PORT | cut -c1-8)" = "+STARTED" ]'
	echo "# $mode (at ${SECONDS}s): source: $(grep -o 'downtime_us.*' "$T/src.out"); load: $(grep -o 'failovers=.*' "$T/load.out")" >&2
	kill -9 "$dpid" 2> /dev/null
	wait "$dpid" 2> /dev/null
done

# A migration that fails before its switchover (nobody listens): the
# source says why and serves on, its data intact.
T_PROG=examples/kv-migrate-refused
if ! want refused; then
	:
elif start_source --migrate-to "$B_IP:$MIG_PORT"; then
	ok migrate-started '[ "$(echo "MIGRATE precopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED precopy" ]'
	for _ in $(seq "$(t_scale 200)"); do
		st=$(echo MIGRATION | kvq "$A_IP" $SRC_PORT)
		case $st in "-ERR"*) break ;; esac
		sleep 0.05
	done
	ok migration-err '[ "${st#-ERR cannot connect to $B_IP:$MIG_PORT}" != "$st" ]'
	ok serving-on '[ "$(printf "SET after 1\nGET after\nGET k7\n" | kvq "$A_IP" $SRC_PORT | tr "\n" " ")" = "+OK \$1 \$k7:0:k7 " ]'
	ok prefill-intact '[ "$(prefill_wrong "$A_IP" $SRC_PORT)" = 0 ]'
	ok incr-refused '[ "$(echo "BGSAVE INCR" | kvq "$A_IP" $SRC_PORT | cut -c1-4)" = "-ERR" ]'
	# SIGUSR2 starts one too (hybrid), which fails the same way.
	kill -USR2 "$spid"
	ok sigusr2-started 'wait_for "$T/src.err" "SIGUSR2: +STARTED hybrid"'
	ok sigusr2-failed '[ "$(grep -c "failed before its switchover" "$T/src.err")" = 2 ] ||
		{ sleep 1; [ "$(grep -c "failed before its switchover" "$T/src.err")" = 2 ]; }'
	ok still-serving '[ "$(echo "GET after" | kvq "$A_IP" $SRC_PORT)" = "\$1" ]'
	kill -9 "$spid" 2> /dev/null
	wait "$spid" 2> /dev/null
else
	result FAIL source-started
fi

# The source killed during postcopy, the destination mid-fetch (no
# background push: only what clients touched is there).
# Recovery is on by default (30 s): 2 s here, so that a lost peer fails soon.
T_PROG=examples/kv-migrate-kill
if ! want kill; then
	:
elif start_dest --migrate-recovery-ms 2000 &&
	start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-no-push --migrate-recovery-ms 2000; then
	ok migrate-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
	ok dest-serving 'wait_for "$T/dst.out" "listening on $B_IP:$DST_PORT"'
	# Served on demand: the first 2000 keys, fetched page by page.
	check_first_keys
	ok dest-mid-fetch '[ "$(echo MIGRATION | kvq "$B_IP" $DST_PORT)" = "+RUNNING postcopy" ]'
	# A reader goes on through the keys, 500 to a connection, until the
	# destination is gone; it records every reply with its key.
	start_reader
	kill -9 "$spid"
	wait "$spid" 2> /dev/null
	wait_rc "$dpid" 60
	dest_rc=$rc
	ok dest-exit-nonzero '[ "$dest_rc" != 0 ] && [ "$dest_rc" != 137 ]'
	has dest-cause "$T/dst.err" "failed after its switchover"
	check_reader
	echo "# kill: the reader got $(wc -l < "$T/reader.out") right values before the destination exited ($dest_rc): $(tail -1 "$T/dst.err")" >&2
else
	result FAIL started
fi

# The other way: the destination killed during postcopy. The source cannot
# take its clients back (the destination may have applied their writes):
# it exits 1 with the cause.
T_PROG=examples/kv-migrate-kill-dest
if ! want kill; then
	:
elif start_dest --migrate-recovery-ms 2000 &&
	start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-no-push --migrate-recovery-ms 2000; then
	ok migrate-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
	ok dest-serving 'wait_for "$T/dst.out" "listening on $B_IP:$DST_PORT"'
	kill -9 "$dpid"
	wait "$dpid" 2> /dev/null
	wait_rc "$spid" 60
	ok source-exit-1 '[ "$rc" = 1 ]'
	has source-cause "$T/src.err" "failed after its switchover"
	ok source-gone '! echo "GET k1" | kvq "$A_IP" $SRC_PORT > /dev/null 2>&1'
else
	result FAIL started
fi

# A migration that must complete: the source exits 0, the destination
# reports it done, and holds every prefilled key.
check_moved() {
	wait_rc "$spid" 120
	ok source-exit-0 '[ "$rc" = 0 ]'
	[ "$rc" = 0 ] || echo "# source: $(tail -c 600 "$T/src.err")" >&2
	ok dest-migration-done 'wait_for "$T/dst.out" "migration done"'
	ok dest-prefill-intact '[ "$(prefill_wrong "$B_IP" $DST_PORT)" = 0 ]'
}
stop_dest() {
	kill -9 "$dpid" 2> /dev/null
	wait "$dpid" 2> /dev/null
}
# The source's MIGRATION once it is no longer +RUNNING, in $st.
migration_end() {
	for _ in $(seq "$(t_scale 400)"); do
		st=$(echo MIGRATION | kvq "$A_IP" $SRC_PORT)
		case $st in "+RUNNING"* | "") sleep 0.05 ;; *) return 0 ;; esac
	done
}

# Driven through the control sockets, as an operator would.
T_PROG=examples/kv-migrate-control
if ! want control; then
	:
elif start_dest --control "$T/dst.sock" && start_source --migrate-to "$B_IP:$MIG_PORT" --control "$T/src.sock"; then
	start_load
	sleep 1.5
	ok start '"$F" migrate start --control "$T/src.sock" --mode hybrid > "$T/start.out" 2>&1' ||
		cat "$T/start.out" >&2
	"$F" migrate watch --control "$T/src.sock" --json --interval 100 > "$T/watch.out" 2> "$T/watch.err"
	ok watch-exit-0 '[ $? = 0 ]' || cat "$T/watch.err" >&2
	ok watch-last-done '[ "$(tail -1 "$T/watch.out" | jq -r ".role + \" \" + .state + \" \" + .mode")" = "source done hybrid" ]'
	ok watch-saw-progress '[ "$(jq -r .state "$T/watch.out" | sort -u | wc -l)" -ge 2 ]'
	check_moved
	check_load
	ok dest-status '"$F" migrate status --control "$T/dst.sock" --json > "$T/dstatus.json" &&
		[ "$(jq -r ".role + \" \" + .state + \" \" + (.pages_remaining | tostring)" "$T/dstatus.json")" = "dest done 0" ]'
	# A second start on the destination is its own business now, but it has
	# no --migrate-to and the request names none: refused, and it serves on.
	ok dest-start-refused '! "$F" migrate start --control "$T/dst.sock" > /dev/null 2>&1'
	ok dest-serving '[ "$(echo "GET k3" | kvq "$B_IP" $DST_PORT)" = "\$k3:0:k3" ]'
	echo "# control: $(tail -1 "$T/watch.out" | jq -c "{downtime_ns, total_ns, rounds, bytes_sent}")" >&2
	stop_dest
else
	result FAIL started
fi

# TLS: a pre-shared key, then X.509 with mutual authentication, then a
# mismatched key, refused before anything switches over.
T_PROG=examples/kv-migrate-tls
if ! want tls; then
	:
elif [ "${KV_MIGRATE_TLS:-1}" = 0 ]; then
	# Left out of the build (-Dtls=disabled), not this machine's fault.
	echo "# tls: skipped: libfaultline is built without TLS" >&2
	result SKIP tls
else
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$T/psk"
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$T/psk2"
	chmod 644 "$T/psk"
	ip netns exec "$NA" "$S" --listen "$A_IP" --port $SRC_PORT --migrate-psk "kv:$T/psk" > "$T/out" 2> "$T/err"
	ok psk-open-refused '[ $? = 2 ] && grep -q "too open.*chmod 600" "$T/err"'
	chmod 600 "$T/psk" "$T/psk2"
	if start_dest --migrate-psk "kv:$T/psk" && start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-psk "kv:$T/psk"; then
		ok psk-started '[ "$(echo "MIGRATE hybrid" | kvq "$A_IP" $SRC_PORT)" = "+STARTED hybrid" ]'
		check_moved
		stop_dest
	else
		result FAIL psk-started
	fi
	if command -v certtool > /dev/null; then
		(
			cd "$T" || exit 1
			printf 'cn = "kv test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' > ca.tmpl
			certtool --generate-privkey --key-type=ecdsa --outfile ca.key &&
				certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.pem || exit 1
			for n in src dst; do
				printf 'cn = "kv-%s"\nip_address = "%s"\ntls_www_server\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' \
					"$n" "$([ $n = src ] && echo "$A_IP" || echo "$B_IP")" > $n.tmpl
				certtool --generate-privkey --key-type=ecdsa --outfile $n.key &&
					certtool --generate-certificate --load-privkey $n.key --load-ca-certificate ca.pem \
						--load-ca-privkey ca.key --template $n.tmpl --outfile $n.pem || exit 1
				chmod 600 $n.key
			done
		) > "$T/certtool.log" 2>&1
		ok certificates '[ $? = 0 ]' || tail -5 "$T/certtool.log" >&2
		if start_dest --migrate-cert "$T/dst.pem" --migrate-key "$T/dst.key" --migrate-ca "$T/ca.pem" &&
			start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-cert "$T/src.pem" --migrate-key "$T/src.key" \
				--migrate-ca "$T/ca.pem"; then
			ok x509-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
			check_moved
			stop_dest
		else
			result FAIL x509-started
		fi
		# Mutual: a destination with --migrate-ca refuses a source that
		# verifies it but shows no certificate of its own.
		if start_dest --migrate-cert "$T/dst.pem" --migrate-key "$T/dst.key" --migrate-ca "$T/ca.pem" &&
			start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-ca "$T/ca.pem"; then
			ok x509-nocert-started '[ "$(echo "MIGRATE hybrid" | kvq "$A_IP" $SRC_PORT)" = "+STARTED hybrid" ]'
			migration_end
			ok x509-nocert-err '[ "${st#-ERR TLS refused the credentials}" != "$st" ]' || echo "# MIGRATION: '$st'" >&2
			ok x509-nocert-serving '[ "$(echo "GET k9" | kvq "$A_IP" $SRC_PORT)" = "\$k9:0:k9" ]'
			kill -9 "$spid" 2> /dev/null
			wait "$spid" 2> /dev/null
			stop_dest
		else
			result FAIL x509-nocert-started
		fi
	elif t_strict; then
		result FAIL certtool-installed
	else
		echo "# $T_PROG: no certtool (gnutls-bin): the X.509 run is skipped" >&2
	fi
	# TLS on one end only.
	if start_dest --migrate-psk "kv:$T/psk" && start_source --migrate-to "$B_IP:$MIG_PORT"; then
		ok plain-started '[ "$(echo "MIGRATE hybrid" | kvq "$A_IP" $SRC_PORT)" = "+STARTED hybrid" ]'
		migration_end
		ok plain-err '[ "${st#-ERR the ends do not speak the same protocol}" != "$st" ]' || echo "# MIGRATION: '$st'" >&2
		ok plain-serving '[ "$(echo "GET k9" | kvq "$A_IP" $SRC_PORT)" = "\$k9:0:k9" ]'
		kill -9 "$spid" 2> /dev/null
		wait "$spid" 2> /dev/null
		stop_dest
	else
		result FAIL plain-started
	fi
	if start_dest --migrate-psk "kv:$T/psk2" && start_source --migrate-to "$B_IP:$MIG_PORT" --migrate-psk "kv:$T/psk"; then
		ok mismatch-started '[ "$(echo "MIGRATE hybrid" | kvq "$A_IP" $SRC_PORT)" = "+STARTED hybrid" ]'
		migration_end
		ok mismatch-err '[ "${st#-ERR TLS refused the credentials}" != "$st" ]' || echo "# MIGRATION: '$st'" >&2
		ok mismatch-serving '[ "$(printf "SET after 1\nGET after\n" | kvq "$A_IP" $SRC_PORT | tr "\n" " ")" = "+OK \$1 " ]'
		ok mismatch-prefill-intact '[ "$(prefill_wrong "$A_IP" $SRC_PORT)" = 0 ]'
		wait_rc "$dpid" 30
		ok mismatch-dest-exit-1 '[ "$rc" = 1 ]'
		has mismatch-dest-cause "$T/dst.err" "before its switchover: TLS refused"
		kill -9 "$spid" 2> /dev/null
		wait "$spid" 2> /dev/null
	else
		result FAIL mismatch-started
	fi
fi

# faultline proxy in A in front of the destination: the migration goes
# through it, rate-limited so that postcopy pages are still on their way
# when it is cut.
PROXY_PORT=7100
start_proxy() { # extra args...
	: > "$T/proxy.out"
	ip netns exec "$NA" "$F" proxy --listen "$A_IP:$PROXY_PORT" --to "$B_IP:$MIG_PORT" "$@" \
		> "$T/proxy.out" 2> "$T/proxy.err" &
	ppid_=$!
	pids+=("$ppid_")
	wait_for "$T/proxy.out" "proxy listening on"
}

T_PROG=examples/kv-migrate-recover
# Over TLS (a new session on each reconnection), as between two hosts.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$T/rpsk"
chmod 600 "$T/rpsk"
rpsk=(--migrate-psk "kv:$T/rpsk")
[ "${KV_MIGRATE_TLS:-1}" = 0 ] && rpsk=()	# a build without TLS: plaintext
if ! want recover; then
	:
elif start_proxy --rate 4M && start_dest "${rpsk[@]}" &&
	start_source --migrate-to "$A_IP:$PROXY_PORT" "${rpsk[@]}"; then
	start_load
	sleep 1.5
	ok migrate-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
	ok dest-serving 'wait_for "$T/dst.out" "listening on $B_IP:$DST_PORT"'
	sleep 0.5
	ok mid-postcopy '[ "$(echo MIGRATION | kvq "$B_IP" $DST_PORT)" = "+RUNNING postcopy" ]'
	kill -USR1 "$ppid_"
	sleep 0.1
	echo "# recover: after the first cut: $(echo MIGRATION | kvq "$B_IP" $DST_PORT)" >&2
	sleep 0.9
	kill -USR1 "$ppid_"
	check_moved
	check_load
	has source-recoveries "$T/src.out" "migration done (postcopy, to $A_IP:$PROXY_PORT): .* recoveries [1-9]"
	has dest-recoveries "$T/dst.out" "migration done (postcopy): .* recoveries [1-9]"
	done_reply=$(echo MIGRATION | kvq "$B_IP" $DST_PORT)
	ok dest-migration-reply '[ "$(echo "$done_reply" | awk "{ print \$1, (\$5 >= 1) }")" = "+DONE 1" ]' ||
		echo "# MIGRATION: '$done_reply'" >&2
	echo "# recover: $(grep -o 'migration done.*' "$T/dst.out"); load: $(grep -o 'failovers=.*' "$T/load.out")" >&2
	stop_dest
	kill -9 "$ppid_" 2> /dev/null
	wait "$ppid_" 2> /dev/null
else
	result FAIL started
fi

# An outage of a second and a half (the proxy killed, then started again)
# in a postcopy without push: meanwhile the destination answers keys whose
# pages are there at once, a client asking for keys on missing pages waits,
# and gets every right answer once the connection is back.
T_PROG=examples/kv-migrate-outage
if ! want outage; then
	:
elif start_proxy && start_dest && start_source --migrate-to "$A_IP:$PROXY_PORT" --migrate-no-push; then
	ok migrate-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
	ok dest-serving 'wait_for "$T/dst.out" "listening on $B_IP:$DST_PORT"'
	check_first_keys
	kill -9 "$ppid_"
	wait "$ppid_" 2> /dev/null
	for _ in $(seq "$(t_scale 100)"); do
		st=$(echo MIGRATION | kvq "$B_IP" $DST_PORT)
		case $st in "+RUNNING recovering"*) break ;; esac
		sleep 0.02
	done
	ok dest-recovering '[ "${st#+RUNNING recovering}" != "$st" ]' || echo "# MIGRATION: '$st'" >&2
	# 100 keys beyond the first 2000: most of their pages have not arrived.
	ip netns exec "$NA" bash -c '
		exec 3<> "/dev/tcp/$1/$2" || exit 1
		for ((i = 10000; i < 10100; i++)); do printf "GET k%d\n" $i >&3; done
		for ((i = 10000; i < 10100; i++)); do IFS= read -r -t 60 r <&3 || exit 1; echo "$i $r"; done' \
		waiter "$B_IP" $DST_PORT > "$T/waiter.out" 2> /dev/null &
	wpid=$!
	pids+=("$wpid")
	# At once (well within the outage): its page arrived before the cut.
	t0=$(date +%s%N)
	ok present-key-served '[ "$(echo "GET k7" | kvq "$B_IP" $DST_PORT)" = "\$k7:0:k7" ] &&
		[ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $(t_scale 1000) ]'
	sleep 1
	waiting=$(( 100 - $(wc -l < "$T/waiter.out") ))
	ok missing-keys-wait '[ "$waiting" -gt 0 ]'
	ok still-recovering '[ "${st#+RUNNING recovering}" != "$st" ] && st=$(echo MIGRATION | kvq "$B_IP" $DST_PORT) &&
		[ "${st#+RUNNING recovering}" != "$st" ]'
	start_proxy
	wait_rc "$wpid" 60
	ok waiter-answered '[ "$rc" = 0 ] && [ "$(wc -l < "$T/waiter.out")" = 100 ]'
	wrong=$(awk '{ k = "k" $1; if ($2 != "$" k ":0:" k) bad++ } END { print bad + 0 }' "$T/waiter.out")
	ok waiter-right '[ "$wrong" = 0 ]'
	ok recovered '[ "$(echo MIGRATION | kvq "$B_IP" $DST_PORT)" = "+RUNNING postcopy" ]'
	echo "# outage: $waiting of 100 requests waited for the reconnection" >&2
	kill -9 "$spid" "$dpid" "$ppid_" 2> /dev/null
	wait "$spid" "$dpid" "$ppid_" 2> /dev/null
else
	result FAIL started
fi

# The proxy killed mid-postcopy and never back: recovery gives up after
# --migrate-recovery-ms, the destination fails closed.
T_PROG=examples/kv-migrate-recovery-timeout
if ! want recovery-timeout; then
	:
elif start_proxy && start_dest --migrate-recovery-ms 2000 &&
	start_source --migrate-to "$A_IP:$PROXY_PORT" --migrate-no-push --migrate-recovery-ms 2000; then
	ok migrate-started '[ "$(echo "MIGRATE postcopy" | kvq "$A_IP" $SRC_PORT)" = "+STARTED postcopy" ]'
	ok dest-serving 'wait_for "$T/dst.out" "listening on $B_IP:$DST_PORT"'
	check_first_keys
	start_reader
	kill -9 "$ppid_"
	wait "$ppid_" 2> /dev/null
	wait_rc "$dpid" 60
	ok dest-exit-nonzero '[ "$rc" != 0 ] && [ "$rc" != 137 ]'
	# The library says recovery gave up; the server exits either from its
	# wait (the cause) or from a client's SIGBUS on a poisoned page, if that
	# comes first: both before any wrong reply.
	has dest-recovery-gave-up "$T/dst.err" "no recovery within 2000 ms"
	ok dest-cause 'grep -q "no reconnection within --migrate-recovery-ms\|a page of the arena never arrived" "$T/dst.err"'
	check_reader
	wait_rc "$spid" 60
	ok source-exit-1 '[ "$rc" = 1 ]'
	has source-cause "$T/src.err" "failed after its switchover"
	echo "# recovery-timeout: the reader got $(wc -l < "$T/reader.out") right values; $(tail -1 "$T/dst.err")" >&2
else
	result FAIL started
fi

# Cancelled from the control socket during precopy (slowed down by the
# proxy's rate limit): watch exits 3, the source serves on, keys intact.
T_PROG=examples/kv-migrate-cancel
if ! want cancel; then
	:
elif start_proxy --rate 2M && start_dest --control "$T/dst.sock" &&
	start_source --migrate-to "$A_IP:$PROXY_PORT" --control "$T/src.sock"; then
	ok start '"$F" migrate start --control "$T/src.sock" --mode precopy > /dev/null'
	"$F" migrate watch --control "$T/src.sock" --json --interval 100 > "$T/watch.out" 2> "$T/watch.err" &
	wpid=$!
	pids+=("$wpid")
	sleep 1
	ok cancel '"$F" migrate cancel --control "$T/src.sock" > /dev/null'
	wait_rc "$wpid" 60
	ok watch-exit-3 '[ "$rc" = 3 ]'
	ok watch-last-cancelled '[ "$(tail -1 "$T/watch.out" | jq -r .state)" = cancelled ]'
	migration_end
	ok migration-err '[ "$st" = "-ERR Operation canceled" ]' || echo "# MIGRATION: '$st'" >&2
	ok serving-on '[ "$(printf "SET after 1\nGET after\n" | kvq "$A_IP" $SRC_PORT | tr "\n" " ")" = "+OK \$1 " ]'
	ok prefill-intact '[ "$(prefill_wrong "$A_IP" $SRC_PORT)" = 0 ]'
	wait_rc "$dpid" 30
	ok dest-exit-1 '[ "$rc" = 1 ]'
	has dest-cause "$T/dst.err" "before its switchover: Operation canceled"
	kill -9 "$spid" "$ppid_" 2> /dev/null
	wait "$spid" "$ppid_" 2> /dev/null
else
	result FAIL started
fi

T_PROG=examples/kv-migrate
echo "# $T_PROG: ${SECONDS}s" >&2
summary
