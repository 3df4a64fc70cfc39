#!/bin/bash
# The CLI's client side, end to end: `image restore --from` a page server
# (plain, TLS PSK, X.509) and from Redis, and `daemon map` against a real
# faultlined. Restored bytes must equal `image export`'s; a bad page must be
# reported and never written; bad URLs are usage errors, unreachable hosts
# runtime errors.
# Usage: client.sh FAULTLINE_BINARY   (env FAULTLINED: the daemon to start)
set -u
F=$1
T=$(mktemp -d /tmp/fl-client-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=client
# A missing tool is a skip, except under FAULTLINE_REQUIRE_FEATURES=all or
# =kernel (t_strict; CI, where everything is installed): a failure.
skipped() {
	if t_strict && [ "${3:-}" != optional ]; then
		echo "# $1: $2 (FAULTLINE_REQUIRE_FEATURES=$FAULTLINE_REQUIRE_FEATURES)" >&2; result FAIL "$1"; return
	fi
	result SKIP "$1: $2"
}
same() { # name, file a, file b
	if cmp -s "$2" "$3"; then result PASS "$1"; else echo "# $1: $2 and $3 differ" >&2; result FAIL "$1"; fi
}
absent() { # name, path: nothing written there (nor a temporary beside it)
	if [ ! -e "$2" ] && ! ls "$(dirname "$2")"/."$(basename "$2")".tmp.* >/dev/null 2>&1; then
		result PASS "$1"
	else echo "# $1: $2 (or a temporary) exists" >&2; result FAIL "$1"; fi
}
pyjson() { # name, python expression over d (the JSON in $T/out)
	if python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert $2, d" "$T/out" 2> "$T/py"; then
		result PASS "$1"
	else echo "# $1: $(tail -1 "$T/py")" >&2; result FAIL "$1"; fi
}
built() { "$F" --version | grep -q -- " +$1\( \|\$\)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve NAME IMAGE [serve options]: start `faultline serve` on 127.0.0.1:0;
# sets $port from its "listening on HOST:PORT" line (0 when it failed).
serve() {
	local name=$1 img=$2; shift 2
	: > "$T/$name.out"	# exists before the background job opens it
	"$F" serve "$img" --listen 127.0.0.1:0 "$@" > "$T/$name.out" 2> "$T/$name.err" &
	local pid=$!
	pids+=("$pid")
	eval "${name}_pid=$pid"
	port=0
	for _ in $(seq $(t_scale 200)); do
		port=$(sed -n 's/^listening on .*:\([0-9]\+\)$/\1/p' "$T/$name.out")
		[ -n "$port" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "# serve $name did not start: $(cat "$T/$name.err")" >&2
	port=0
	return 1
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# ---- help and documentation -------------------------------------------------------
man1=$(dirname "$0")/../../man/faultline.1
check top-help 0 "$F" --help
has top-help-lists-daemon "$T/out" "daemon map"
has top-help-lists-from "$T/out" "tcp://"
check image-help 0 "$F" image --help
has image-help-lists-from "$T/out" "restore --from URL"
check restore-help 0 "$F" image restore --help
has restore-help-tcp "$T/out" "tcp://HOST:PORT"
has restore-help-redis "$T/out" "redis://HOST"
has restore-help-local "$T/out" "faultline image restore IMG"
check daemon-help 0 "$F" daemon --help
has daemon-help-map "$T/out" "faultline daemon map IMAGE"
check daemon-map-help 0 "$F" daemon map --help
has man-documents-daemon-map "$man1" '^\.SS "faultline daemon map'
has man-documents-restore-from "$man1" 'restore \\-\\-from'

# ---- images ---------------------------------------------------------------------------
"$F" image create "$T/a.img" --pattern 8M --zero-pages > /dev/null || exit 1
"$F" image export "$T/a.img" -o "$T/a.raw" || exit 1
head -c 8M /dev/urandom > "$T/b.raw"
"$F" image create "$T/b.img" --from "$T/b.raw" > /dev/null || exit 1
cp "$T/a.img" "$T/d.img"		# one flipped data byte: a page that fails its checksum
printf 'X' | dd of="$T/d.img" bs=1 seek=20000 conv=notrunc 2>/dev/null
"$F" image verify "$T/d.img" > /dev/null 2>&1 && { echo "# d.img is not corrupt" >&2; exit 1; }

# ---- usage errors (exit 2), before any connection --------------------------------------
check from-no-value 2 "$F" image restore --from
check from-bad-scheme 2 "$F" image restore --from http://127.0.0.1:80
has from-bad-scheme-says "$T/err" "bad URL"
check from-no-port 2 "$F" image restore --from tcp://127.0.0.1
check from-bad-port 2 "$F" image restore --from tcp://127.0.0.1:99999
check from-path 2 "$F" image restore --from tcp://127.0.0.1:7000/x
check from-bad-v6 2 "$F" image restore --from 'tcp://[::1:7000'
check from-two-images 2 "$F" image restore --from tcp://127.0.0.1:7000 "$T/a.img" "$T/b.img"
check from-unknown-option 2 "$F" image restore --from tcp://127.0.0.1:7000 --working-set
check from-psk-and-x509 2 "$F" image restore --from tcp://127.0.0.1:7000 \
	--tls-psk a:000102030405060708090a0b0c0d0e0f --tls-ca "$T/a.img"
check from-bad-psk 2 "$F" image restore --from tcp://127.0.0.1:7000 --tls-psk nocolon
check from-redis-tls 2 "$F" image restore --from redis://127.0.0.1:1/x --tls
check daemon-no-sub 2 "$F" daemon
check daemon-unknown-sub 2 "$F" daemon frobnicate
check daemon-map-no-image 2 "$F" daemon map
check daemon-map-absolute 2 "$F" daemon map /etc/passwd
check daemon-map-bad-region 2 "$F" daemon map a.img --region x
# the local form is unchanged
check local-restore 0 "$F" image restore "$T/a.img"
has local-restore-says "$T/out" "read 2048 of 2048 pages"
check local-restore-usage 2 "$F" image restore

# ---- a page server, plain TCP ----------------------------------------------------------------
if serve plain "$T/a.img"; then
	url=tcp://127.0.0.1:$port
	check tcp-restore 0 "$F" image restore --from "$url" -o "$T/tcp.raw"
	same tcp-restore-bytes "$T/tcp.raw" "$T/a.raw"
	has tcp-restore-reports "$T/out" "restored 2048 of 2048 pages"
	has tcp-restore-first-access "$T/out" "first access"
	check tcp-restore-json 0 "$F" image restore --from "$url" --json "$T/a.img"
	pyjson tcp-restore-json-fields 'd["pages"] == 2048 and d["pages_ok"] == 2048 and d["pages_bad"] == 0 and d["mismatches"] == 0 and d["first_access_us"] > 0 and d["seconds"] > 0 and d["bytes"] == 8388608'
	check tcp-restore-other-image 1 "$F" image restore --from "$url" "$T/b.img" -o "$T/other.raw"
	has tcp-restore-other-image-says "$T/err" "pages differ from"
	absent tcp-restore-other-image-writes-nothing "$T/other.raw"
	check tcp-no-region 1 "$F" image restore --from "$url" --region 3
	has tcp-no-region-says "$T/err" "no region 3"
	check tcp-tls-to-plain 1 "$F" image restore --from "$url" --timeout $(t_scale 2000) \
		--tls-psk a:000102030405060708090a0b0c0d0e0f
	stop "$plain_pid"
	# the server is gone: refused, one line, exit 1
	check tcp-unreachable 1 "$F" image restore --from "$url" --timeout $(t_scale 2000) -o "$T/gone.raw"
	has tcp-unreachable-says "$T/err" "connection refused"
	[ "$(wc -l < "$T/err")" = 1 ] && result PASS tcp-unreachable-one-line || result FAIL tcp-unreachable-one-line
	absent tcp-unreachable-writes-nothing "$T/gone.raw"
else
	result FAIL serve-plain-starts
fi
# IPv6: a bracketed address (skipped when this host has no ::1)
if serve v6 "$T/a.img" --listen '[::1]:0' 2> /dev/null; then
	check tcp-v6-restore 0 "$F" image restore --from "tcp://[::1]:$port" -o "$T/v6.raw"
	same tcp-v6-restore-bytes "$T/v6.raw" "$T/a.raw"
	stop "$v6_pid"
else
	skipped tcp-v6 "no IPv6 loopback" optional
fi
check tcp-unresolvable 1 "$F" image restore --from tcp://no-such-host.invalid:7000 --timeout $(t_scale 2000)

# ---- a corrupt page at the source: reported, never written (nor as zeros) -----------------
if serve corrupt "$T/d.img"; then
	url=tcp://127.0.0.1:$port
	check corrupt-restore 1 "$F" image restore --from "$url" -o "$T/d.raw" --timeout $(t_scale 3000)
	has corrupt-restore-says "$T/err" "could not be delivered"
	absent corrupt-restore-writes-nothing "$T/d.raw"
	check corrupt-restore-json 1 "$F" image restore --from "$url" --json --timeout $(t_scale 3000)
	pyjson corrupt-restore-json-counts 'd["pages_bad"] == 1 and d["pages_ok"] == 2047 and d["first_bad_page"] is not None'
	check corrupt-restore-json-output 1 "$F" image restore --from "$url" --json -o "$T/d2.raw" --timeout $(t_scale 3000)
	pyjson corrupt-restore-json-no-output 'd["output"] is None'
	absent corrupt-restore-json-writes-nothing "$T/d2.raw"
	stop "$corrupt_pid"
else
	result FAIL serve-corrupt-starts
fi

# ---- TLS ---------------------------------------------------------------------------------------
psk=client:000102030405060708090a0b0c0d0e0f1011121314151617
if built tls; then
	if serve psk "$T/a.img" --tls-psk "$psk"; then
		url=tcp://127.0.0.1:$port
		check psk-restore 0 "$F" image restore --from "$url" --tls-psk "$psk" -o "$T/psk.raw"
		same psk-restore-bytes "$T/psk.raw" "$T/a.raw"
		echo "$psk" > "$T/psk.txt"
		check psk-file-restore 0 "$F" image restore --from "$url" --tls-psk-file "$T/psk.txt" "$T/a.img"
		has psk-file-restore-checked "$T/out" "mismatches: 0"
		check psk-wrong-key 1 "$F" image restore --from "$url" --timeout $(t_scale 2000) \
			--tls-psk client:ff0102030405060708090a0b0c0d0e0f1011121314151617
		has psk-wrong-key-says "$T/err" "TLS credentials refused"
		check psk-plain-client 1 "$F" image restore --from "$url" --timeout $(t_scale 2000)
		stop "$psk_pid"
	else
		result FAIL serve-psk-starts
	fi
	if command -v certtool > /dev/null; then
		(
			cd "$T" &&
			printf 'cn = "client test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' > ca.tmpl &&
			certtool --generate-privkey --key-type=ecdsa --outfile ca.key &&
			certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.pem &&
			printf 'cn = "srv"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n' > srv.tmpl &&
			certtool --generate-privkey --key-type=ecdsa --outfile srv.key &&
			certtool --generate-certificate --load-privkey srv.key --load-ca-certificate ca.pem \
				--load-ca-privkey ca.key --template srv.tmpl --outfile srv.pem
		) > /dev/null 2>&1 || echo "# certtool failed" >&2
		if serve x509 "$T/a.img" --tls-cert "$T/srv.pem" --tls-key "$T/srv.key"; then
			url=tcp://127.0.0.1:$port
			check x509-restore 0 "$F" image restore --from "$url" --tls-ca "$T/ca.pem" -o "$T/x509.raw"
			same x509-restore-bytes "$T/x509.raw" "$T/a.raw"
			# the test CA is not in the system's trust: refused
			check x509-untrusted 1 "$F" image restore --from "$url" --tls --timeout $(t_scale 2000)
			stop "$x509_pid"
		else
			result FAIL serve-x509-starts
		fi
	else
		skipped x509 "certtool not installed (apt-get install gnutls-bin)"
	fi
else
	check psk-not-built 1 "$F" image restore --from tcp://127.0.0.1:7000 --tls-psk "$psk"
	has psk-not-built-says "$T/err" "built without TLS support (-Dtls=disabled)"
fi

# ---- Redis -------------------------------------------------------------------------------------------
if ! built redis; then
	check redis-not-built 1 "$F" image restore --from redis://127.0.0.1:6379/x
	has redis-not-built-says "$T/err" "built without Redis support (-Dredis=disabled)"
elif ! command -v redis-server > /dev/null; then
	skipped redis "redis-server not installed (apt-get install redis-server)"
else
	rport=$(free_port)
	mkdir "$T/redis"
	redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
		--dir "$T/redis" --logfile "$T/redis/log" &
	rpid=$!
	pids+=("$rpid")
	for _ in $(seq $(t_scale 200)); do
		[ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break
		sleep 0.05
	done
	rurl=redis://127.0.0.1:$rport/client
	check redis-push 0 "$F" image push -q "$T/a.img" "$rurl"
	check redis-restore 0 "$F" image restore --from "$rurl" -o "$T/redis.raw"
	same redis-restore-bytes "$T/redis.raw" "$T/a.raw"
	check redis-restore-json 0 "$F" image restore --from "$rurl" --json "$T/a.img"
	pyjson redis-restore-json-fields 'd["pages"] == 2048 and d["pages_bad"] == 0 and d["mismatches"] == 0'
	check redis-empty-prefix 1 "$F" image restore --from "redis://127.0.0.1:$rport/nothing" --timeout $(t_scale 1000)
	has redis-empty-prefix-says "$T/err" "no image under that prefix"
	check redis-bad-url 2 "$F" image restore --from "redis://127.0.0.1:$rport/a b"
	# a page value damaged in Redis: reported, nothing written
	key=$(redis-cli -p "$rport" --scan --pattern 'client:{*:0:0}:3' | head -1)
	if [ -n "$key" ]; then
		redis-cli -p "$rport" setrange "$key" 100 XXXX > /dev/null
		check redis-corrupt 1 "$F" image restore --from "$rurl" -o "$T/rc.raw" --timeout $(t_scale 2000)
		has redis-corrupt-says "$T/err" "could not be delivered"
		absent redis-corrupt-writes-nothing "$T/rc.raw"
	else
		result FAIL redis-page-key-found
	fi
	stop "$rpid"
	check redis-unreachable 1 "$F" image restore --from "$rurl" --timeout $(t_scale 500)
fi

# ---- faultlined --------------------------------------------------------------------------------------
check daemon-no-daemon 1 "$F" daemon map a.img --images "$T" --socket "$T/nothing.sock"
has daemon-no-daemon-says "$T/err" "no daemon there"
FLD=${FAULTLINED:-}
if [ -n "$FLD" ] && [ -x "$FLD" ]; then
	mkdir -p "$T/fld/images" "$T/other"
	cp "$T/a.img" "$T/d.img" "$T/fld/images/"
	cp "$T/b.img" "$T/other/a.img"		# same name and size, other bytes
	"$FLD" --socket "$T/fld/sock" --images "$T/fld/images" 2> "$T/fld/log" &
	fld_pid=$!
	pids+=("$fld_pid")
	for _ in $(seq $(t_scale 200)); do
		[ -S "$T/fld/sock" ] && "$F" stats --socket "$T/fld/sock" > /dev/null 2>&1 && break
		kill -0 "$fld_pid" 2>/dev/null || break
		sleep 0.05
	done
	D=(--socket "$T/fld/sock" --images "$T/fld/images")
	check daemon-map 0 "$F" daemon map a.img "${D[@]}" --verify
	has daemon-map-says "$T/out" "touched 2048 of 2048 pages"
	has daemon-map-verified "$T/out" "0 mismatches"
	has daemon-map-pid "$T/out" "faultlined pid $fld_pid"
	check daemon-map-template 0 "$F" daemon map a.img "${D[@]}" --template --verify --json
	pyjson daemon-map-template-json 'd["source"] == "template" and d["pages"] == 2048 and d["pages_bad"] == 0 and d["mismatches"] == 0 and d["daemon_pid"] == '"$fld_pid"
	FAULTLINED_SOCKET="$T/fld/sock" check daemon-map-env-socket 0 "$F" daemon map a.img --images "$T/fld/images"
	# --verify compares with the image read here: another a.img must fail
	check daemon-map-verify-differs 1 "$F" daemon map a.img --socket "$T/fld/sock" --images "$T/other" --verify
	has daemon-map-verify-differs-says "$T/err" "pages differ"
	check daemon-map-corrupt 1 "$F" daemon map d.img "${D[@]}" --verify --json
	pyjson daemon-map-corrupt-counts 'd["pages_bad"] == 1 and d["pages_ok"] == 2047'
	check daemon-map-missing 1 "$F" daemon map nope.img "${D[@]}"
	check daemon-map-no-region 1 "$F" daemon map a.img "${D[@]}" --region 2
	# the daemon does not know it, the local directory does
	cp "$T/a.img" "$T/other/only-here.img"
	check daemon-map-not-in-daemon 1 "$F" daemon map only-here.img --socket "$T/fld/sock" --images "$T/other"
	has daemon-map-not-in-daemon-says "$T/err" "no such image"
	kill -0 "$fld_pid" 2>/dev/null && result PASS daemon-still-running || result FAIL daemon-still-running
	stop "$fld_pid"
else
	skipped daemon "faultlined not given (\$FAULTLINED)"
fi

summary
