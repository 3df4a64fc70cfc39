#!/bin/bash
# faultline proxy end to end, on 127.0.0.1: bytes intact both ways, the
# delay applied, SIGUSR1 resets open connections and later ones work,
# --cut-after resets at the byte count, usage errors exit 2.
# Usage: proxy.sh FAULTLINE_BINARY
set -u
F=$1
P="python3 $(dirname "$0")/proxy-peer.py"
T=$(mktemp -d /tmp/fl-proxy-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=proxy

# start_server MODE NAME: a peer server (proxy-peer.py) in the background;
# its port in $NAME_port, its reports in $T/NAME/last.
start_server() {
	mkdir -p "$T/$2"
	$P server "$1" "$T/$2" > "$T/$2/port" &
	pids+=($!)
	for _ in $(seq "$(t_scale 200)"); do [ -s "$T/$2/port" ] && break; sleep 0.05; done
	eval "$2_port=$(cat "$T/$2/port")"
}
# start_proxy NAME ARGS...: faultline proxy --listen 127.0.0.1:0 ARGS in the
# background; its pid in $NAME_pid, its port in $NAME_port, stdout in
# $T/NAME.out.
start_proxy() {
	local name=$1
	shift
	"$F" proxy --listen 127.0.0.1:0 "$@" > "$T/$name.out" 2> "$T/$name.err" &
	eval "${name}_pid=$!"
	pids+=($!)
	t_poll 200 grep -qs "^proxy listening on" "$T/$name.out"
	eval "${name}_port=$(sed -n 's/^proxy listening on 127\.0\.0\.1:\([0-9]\+\)$/\1/p' "$T/$name.out")"
}
# wait_last DIR: the server's report of the connection that ended last.
wait_last() {
	t_poll 200 test -s "$T/$1/last"
	cat "$T/$1/last" 2> /dev/null
}

start_server echo echo
start_server sink sink

# Plain relay: 4 MiB up, echoed back, checksummed at both ends.
start_proxy plain --to "127.0.0.1:$echo_port"
ok listening-line '[ -n "$plain_port" ] && [ "$plain_port" != 0 ]'
read -r sent back nback <<< "$(timeout "$(t_scale 60)" $P echo "$plain_port" 4194304)"
ok intact-down '[ "$sent" = "$back" ] && [ "$nback" = 4194304 ]'
read -r nup shaup end <<< "$(wait_last echo)"
ok intact-up '[ "$nup" = 4194304 ] && [ "$shaup" = "$sent" ] && [ "$end" = eof ]'

# SIGUSR1: the open connection is reset, a new one is relayed.
rm -f "$T/echo/last"
ok cut-resets-client '[ "$(timeout "$(t_scale 30)" $P hold "$plain_port" "$plain_pid")" = reset ]'
ok cut-resets-server '[ "$(wait_last echo | cut -d" " -f3)" = reset ]'
read -r sent back nback <<< "$(timeout "$(t_scale 60)" $P echo "$plain_port" 65536)"
ok after-cut-relays '[ "$sent" = "$back" ] && [ "$nback" = 65536 ]'
kill -TERM "$plain_pid"
wait "$plain_pid"
rc=$?
ok term-exits-0 '[ $rc = 0 ]'
has term-reports "$T/plain.out" "^proxy: 3 connections, 4259844 bytes relayed to 127.0.0.1:$echo_port, 4259844 back, 1 cut"

# The delay: every one-byte round trip crosses it twice (a lower bound on
# what the proxy adds, not a performance figure).
start_proxy delay --to "127.0.0.1:$echo_port" --delay-ms 20
ms=$(timeout "$(t_scale 60)" $P rtt "$delay_port" 5)
ok delay-rtt-at-least-40ms 'awk -v m="$ms" "BEGIN { exit !(m >= 40) }" || { echo "# rtt $ms ms" >&2; false; }'
# The delay is latency only: 4 MiB still relayed intact through it.
read -r sent back nback <<< "$(timeout "$(t_scale 60)" $P echo "$delay_port" 4194304)"
ok delay-intact '[ "$sent" = "$back" ] && [ "$nback" = 4194304 ]'
kill -TERM "$delay_pid"

# A peer's reset travels like its data: the greeting sent before it
# arrives first, 200 ms later, then the reset.
start_server reset resetter
start_proxy peerreset --to "127.0.0.1:$resetter_port" --delay-ms 200
ok peer-reset-in-order '[ "$(timeout "$(t_scale 30)" $P recv "$peerreset_port")" = "hello reset" ]'
kill -TERM "$peerreset_pid"

# A target that refuses: the client is reset, the proxy counts it and goes
# on (port 1 on loopback: nothing listens there).
start_proxy refused --to 127.0.0.1:1
ok refused-resets-client '[ "$(timeout "$(t_scale 30)" $P recv "$refused_port")" = "- reset" ]'
kill -TERM "$refused_pid"
wait "$refused_pid"
has refused-counted "$T/refused.out" "^proxy: 1 connections, .* 1 refused by the target"

# --cut-after: exactly that many bytes arrive, then both ends see a reset.
rm -f "$T/sink/last"
start_proxy cutafter --to "127.0.0.1:$sink_port" --cut-after 100000
out=$(timeout "$(t_scale 60)" $P send "$cutafter_port" 1048576)
read -r ncut _ end <<< "$(wait_last sink)"
ok cut-after-count '[ "$ncut" = 100000 ] || { echo "# the sink got $ncut bytes" >&2; false; }'
ok cut-after-server-reset '[ "$end" = reset ]'
ok cut-after-client-reset '[ "${out##* }" = reset ] || { echo "# client: $out" >&2; false; }'
kill -TERM "$cutafter_pid"

# --loss 100: every chunk stalls 200 ms, and still arrives intact.
start_proxy loss --to "127.0.0.1:$echo_port" --loss 100
ms=$(timeout "$(t_scale 60)" $P rtt "$loss_port" 2)
ok loss-stalls 'awk -v m="$ms" "BEGIN { exit !(m >= 400) }" || { echo "# rtt $ms ms" >&2; false; }'
kill -TERM "$loss_pid"

# --rate: 2 MiB at 2 MiB/s each way takes at least 0.9 s (a lower bound).
start_proxy rate --to "127.0.0.1:$echo_port" --rate 2M
t0=$(date +%s%N)
read -r sent back nback <<< "$(timeout "$(t_scale 60)" $P echo "$rate_port" 2097152)"
t1=$(date +%s%N)
ok rate-intact '[ "$sent" = "$back" ] && [ "$nback" = 2097152 ]'
ok rate-limits '[ $(((t1 - t0) / 1000000)) -ge 900 ] || { echo "# $(((t1 - t0) / 1000000)) ms" >&2; false; }'
kill -TERM "$rate_pid"

# Usage errors: exit 2 and one line naming the problem.
check no-to 2 "$F" proxy --listen 127.0.0.1:0
has no-to-says "$T/err" "--listen and --to are required"
check bad-listen 2 "$F" proxy --listen nowhere --to "127.0.0.1:$echo_port"
has bad-listen-says "$T/err" "--listen: ADDR:PORT wanted"
check bad-loss 2 "$F" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$echo_port" --loss 101
has bad-loss-says "$T/err" "--loss: a percentage"
check bad-rate 2 "$F" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$echo_port" --rate fast
check bad-delay 2 "$F" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$echo_port" --delay-ms -1
check to-port-0 2 "$F" proxy --listen 127.0.0.1:0 --to 127.0.0.1:0
check unknown-option 2 "$F" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$echo_port" --jitter 5
check missing-value 2 "$F" proxy --listen
check help 0 "$F" proxy --help
has help-names-stall "$T/out" "200 ms"
summary
