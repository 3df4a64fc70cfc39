#!/bin/bash
# faultline migrate against a program that embeds the control socket
# (test/migrate/ctl-app): start, watch --json to the end, status --json,
# cancel, and every error an operator can run into.
# Usage: migrate.sh FAULTLINE_BINARY CTL_APP_BINARY
set -u
F=$1
APP=$2
T=$(mktemp -d /tmp/fl-cli-migrate-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=cli-migrate

# json_get FILE EXPR: a Python expression over the document `d` (the last
# line of FILE when it holds one object per line).
json_get() { python3 -c 'import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    d = json.loads(lines[-1])
print(eval(sys.argv[2]))' "$1" "$2"; }

# wait_for SECONDS COMMAND...: poll until it succeeds.
wait_for() { t_poll $(($1 * 20)) "${@:2}" 2> /dev/null; }
listening() { "$F" migrate status --control "$1" > /dev/null 2>&1; }
in_state() { "$F" migrate status --control "$1" --json 2> /dev/null | grep -q "\"state\": \"$2\""; }

# start_pair NAME: a destination (its port in $port) and a source
# (control socket $T/NAME.sock, pid $src), the bulk channel paced so the
# migration takes a few seconds.
start_pair() {
	rm -f "$T/$1.port"
	"$APP" dest --port-file "$T/$1.port" --pages 2048 2> "$T/$1.dest.log" &
	dst=$!
	pids+=("$dst")
	"$APP" source --control "$T/$1.sock" --pages 2048 --rate 8000000 2> "$T/$1.src.log" &
	src=$!
	pids+=("$src")
	wait_for 10 test -s "$T/$1.port" && wait_for 10 listening "$T/$1.sock"
	port=$(cat "$T/$1.port")
}
# stop PID: SIGTERM, then its exit status.
stop() { kill "$1" 2> /dev/null; wait "$1"; }

# ---- a whole migration -----------------------------------------------------
start_pair run
check start 0 "$F" migrate start --control "$T/run.sock" --to "127.0.0.1:$port" --mode hybrid
has start-says "$T/out" "started: hybrid migration to 127.0.0.1:$port"
check start-again-refused 1 "$F" migrate start --control "$T/run.sock" --to "127.0.0.1:$port"
has start-again-says "$T/err" "^faultline: migrate: start: a migration is running"
check watch-json 0 timeout "$(t_scale 60)" "$F" migrate watch --control "$T/run.sock" --json --interval 50
cp "$T/out" "$T/watch.json"
ok watch-json-last-done '[ "$(json_get "$T/watch.json" "d[\"state\"]")" = done ]'
ok watch-json-one-object-a-line '[ "$(wc -l < "$T/watch.json")" -ge 3 ] &&
	python3 -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$T/watch.json"'
# the objects follow the migration: the first not done yet, remaining pages falling to 0
ok watch-json-progress '[ "$(json_get "$T/watch.json" "json.loads(lines[0])[\"state\"] != \"done\" and d[\"pages_remaining\"] == 0 and d[\"pages_total\"] == 2048")" = True ]'
check status-json 0 "$F" migrate status --control "$T/run.sock" --json
cp "$T/out" "$T/status.json"
ok status-json-fields '[ "$(json_get "$T/status.json" "[d[k] for k in (\"role\", \"state\", \"mode\", \"pages_remaining\", \"error\", \"pages_total\")] == [\"source\", \"done\", \"hybrid\", 0, 0, 2048]")" = True ]'
ok status-json-numbers '[ "$(json_get "$T/status.json" "all(isinstance(d[k], int) for k in (\"bytes_sent\", \"downtime_ns\", \"total_ns\", \"rounds\", \"pages_sent\", \"request_p99_ns\")) and d[\"downtime_ns\"] > 0")" = True ]'
check status-text 0 "$F" migrate status --control "$T/run.sock"
has status-text-state "$T/out" "^migration  done (source, hybrid)"
has status-text-pages "$T/out" "pages      0 remaining of 2048"
# watch on a migration already over: its end at once
check watch-text-done 0 "$F" migrate watch --control "$T/run.sock"
has watch-text-summary "$T/out" "^done in .*, downtime .*, .* sent"
check cancel-too-late 1 "$F" migrate cancel --control "$T/run.sock"
has cancel-too-late-says "$T/err" "^faultline: migrate: cancel: too late: switchover has begun"
ok dest-verified 'wait "$dst"; [ $? = 0 ] && grep -q "dest verified 2048 pages" "$T/run.dest.log"'
ok source-exit 'stop "$src"'

# ---- cancel ----------------------------------------------------------------
start_pair can
check cancel-start 0 "$F" migrate start --control "$T/can.sock" --to "127.0.0.1:$port" --mode precopy
wait_for 10 in_state "$T/can.sock" precopy
check cancel 0 "$F" migrate cancel --control "$T/can.sock"
check watch-cancelled 3 timeout "$(t_scale 30)" "$F" migrate watch --control "$T/can.sock" --interval 50
has watch-cancelled-says "$T/out" "^cancelled"
check status-cancelled 0 "$F" migrate status --control "$T/can.sock" --json
ok status-cancelled-state '[ "$(json_get "$T/out" "d[\"state\"]")" = cancelled ]'
# the destination learns it (ctl-app exits 3), the source runs on intact (exit 0)
ok cancel-dest-told 'wait "$dst"; [ $? = 3 ]'
ok cancel-source-intact 'stop "$src"'

# ---- a failed migration: watch exits 1 and names the error -------------------
start_pair fail
check fail-start 0 "$F" migrate start --control "$T/fail.sock" --to "127.0.0.1:$port" --mode hybrid
wait_for 10 in_state "$T/fail.sock" precopy
kill -9 "$dst"
wait "$dst" 2> /dev/null
check watch-failed 1 timeout "$(t_scale 30)" "$F" migrate watch --control "$T/fail.sock" --interval 50
has watch-failed-names-error "$T/err" "^faultline: migrate: the migration failed: .* (-[0-9]\+)$"
ok fail-source-intact 'stop "$src"'

# ---- errors ------------------------------------------------------------------
check no-control 2 "$F" migrate status
has no-control-says "$T/err" "^faultline: migrate status: --control PATH is required"
check no-command 2 "$F" migrate
check bad-command 2 "$F" migrate pause --control "$T/x.sock"
has bad-command-says "$T/err" "unknown command 'pause'"
check bad-mode 2 "$F" migrate start --control "$T/x.sock" --to 127.0.0.1:1 --mode sideways
has bad-mode-says "$T/err" "^faultline: migrate start: --mode is precopy, postcopy or hybrid, not 'sideways'"
check bad-to 2 "$F" migrate start --control "$T/x.sock" --to nowhere
has bad-to-says "$T/err" "--to wants HOST:PORT"
check bad-interval 2 "$F" migrate watch --control "$T/x.sock" --interval 0
check json-not-for-cancel 2 "$F" migrate cancel --control "$T/x.sock" --json
check no-socket 1 "$F" migrate status --control "$T/none.sock"
has no-socket-says "$T/err" "^faultline: migrate: $T/none.sock: no such control socket$"
touch "$T/file"
check not-a-socket 1 "$F" migrate status --control "$T/file"
has not-a-socket-says "$T/err" "^faultline: migrate: $T/file: not a socket$"
# a socket file nobody listens on (a program that died)
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/stale.sock"
check nobody-listens 1 "$F" migrate status --control "$T/stale.sock"
has nobody-listens-says "$T/err" "nobody listens on this socket"
# a socket that is not a faultline control socket: it answers something else
python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)
while True:
    c, _ = s.accept(); c.recv(256); c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"); c.close()' "$T/other.sock" &
pids+=("$!")
wait_for 10 test -S "$T/other.sock"
check not-faultline 1 "$F" migrate status --control "$T/other.sock"
has not-faultline-says "$T/err" "not a faultline migration control socket"
# a program's start callback that fails: its error comes back
start_pair err
check start-refused 1 "$F" migrate start --control "$T/err.sock" --to 127.0.0.1:1
has start-refused-says "$T/err" "^faultline: migrate: start: start failed: Connection refused"
check start-no-destination 1 "$F" migrate start --control "$T/err.sock"
has start-no-destination-says "$T/err" "Destination address required"
check cancel-nothing 1 "$F" migrate cancel --control "$T/err.sock"
has cancel-nothing-says "$T/err" "no migration to cancel"
stop "$src"
stop "$dst" 2> /dev/null
# permission: the socket is its owner's (root reaches it anyway)
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	start_pair perm
	ok socket-mode-0600 '[ "$(stat -c %a "$T/perm.sock")" = 600 ]'
	chmod 755 "$T"
	setpriv --reuid=65534 --regid=65534 --clear-groups "$F" migrate status --control "$T/perm.sock" \
		> "$T/out" 2> "$T/err"
	ok permission-denied-exit '[ $? = 1 ]'
	has permission-denied-says "$T/err" "permission denied (a control socket is for its owner only)"
	stop "$src"
	stop "$dst" 2> /dev/null
else
	skip_case permission-denied "needs root and setpriv to try as another user"
fi
# faultline(1) documents the command
man1=$(dirname "$0")/../../man/faultline.1
has man-documents-migrate "$man1" '^\.SS "faultline migrate'
check help-lists-migrate 0 "$F" --help
has help-lists-migrate-says "$T/out" "migrate"

summary
