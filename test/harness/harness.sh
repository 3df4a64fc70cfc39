# SPDX-License-Identifier: LGPL-2.1-or-later
# The shell tests' half of the harness (test/harness/harness.c is the C
# half): the same "PASS|FAIL|SKIP prog/case" lines on stdout, appended to
# $FL_TEST_RESULTS for tools/check.sh, and counters for the summary.
# Source it, then set T_PROG (the "prog" of the case names):
#   . "$(dirname "$0")/../harness/harness.sh"; T_PROG=cli
pass=0 fail=0 skip=0
T_PROG=${T_PROG:-test}

# result VERDICT NAME
result() {
	echo "$1 $T_PROG/$2"
	[ -n "${FL_TEST_RESULTS:-}" ] && echo "$1 $T_PROG/$2" >> "$FL_TEST_RESULTS"
	case $1 in
	PASS) pass=$((pass + 1)) ;;
	SKIP*) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)) ;;
	esac
}
# ok NAME EXPRESSION: PASS when the shell expression holds.
ok() { if eval "$2"; then result PASS "$1"; else echo "# $1: failed: $2" >&2; result FAIL "$1"; fi; }
# check NAME WANTED_EXIT COMMAND...: stdout in $T/out, stderr in $T/err.
check() {
	local name=$1 want=$2 rc
	shift 2
	"$@" > "$T/out" 2> "$T/err"
	rc=$?
	if [ "$rc" = "$want" ]; then result PASS "$name"
	else echo "# $name: exit $rc, want $want; stderr: $(head -c 300 "$T/err")" >&2; result FAIL "$name"; fi
}
# has NAME FILE PATTERN: grep finds PATTERN in FILE.
has() {
	if grep -q -- "$3" "$2"; then result PASS "$1"; else echo "# $1: no '$3' in $2" >&2; result FAIL "$1"; fi
}
# t_scale N: N times FAULTLINE_TIMEOUT_SCALE (a number from 1 to 1000,
# default 1), rounded up: every deadline of the shell tests goes through it
# (`timeout $(t_scale 60) cmd`, `--timeout $(t_scale 2000)`, polling loops
# `for _ in $(seq $(t_scale 400)); do ...; sleep 0.05; done`), as
# t_scaled_ms() in harness.c.
t_scale() {
	awk -v n="$1" -v s="${FAULTLINE_TIMEOUT_SCALE:-1}" 'BEGIN {
		if (s !~ /^[0-9]+(\.[0-9]*)?$/ || s + 0 < 1 || s + 0 > 1000) s = 1
		v = n * s; r = int(v); if (r < v) r++; print r }'
}
# t_poll TRIES COMMAND...: run COMMAND every 50 ms until it succeeds
# (status 0), at most t_scale TRIES times (status 1 if it never did).
# COMMAND may be `eval "expression"`; the loop's own names start with _t_.
t_poll() {
	local _t_n _t_i
	_t_n=$(t_scale "$1")
	shift
	for ((_t_i = 0; _t_i < _t_n; _t_i++)); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}
# t_strict: FAULTLINE_REQUIRE_FEATURES is "all" or "kernel", so a missing
# resource (a tool, huge pages) is a failure, not a skip (as t_strict() in
# harness.c).
t_strict() {
	case ${FAULTLINE_REQUIRE_FEATURES:-} in all | kernel) return 0 ;; esac
	return 1
}
# skip_case NAME WHY: a case this machine cannot run (not root, a tool or a
# filesystem missing): a SKIP line, or a FAIL under t_strict (as t_skip()
# in harness.c). A part left out of the build is not this machine's fault:
# result SKIP for those.
skip_case() {
	if t_strict; then
		echo "# $1: $2 (FAULTLINE_REQUIRE_FEATURES=$FAULTLINE_REQUIRE_FEATURES: a skip for this machine is a failure)" >&2
		result FAIL "$1"
	else
		echo "# $1: skipped: $2" >&2
		result SKIP "$1"
	fi
}
# summary: the closing line; the exit status says whether anything failed.
summary() {
	echo "# $T_PROG: $pass passed, $fail failed, $skip skipped" >&2
	[ "$fail" = 0 ]
}
