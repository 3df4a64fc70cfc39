#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build faultline and run every test the way CI does.
#
#   tools/check.sh                  all passes (what `make check` and CI run)
#   tools/check.sh --quick          the plain pass only
#   tools/check.sh --only P[,P...]  only these passes (e.g. --only minimal)
#
# Passes, in order:
#   plain    build/ (-Dwerror=true); meson test with
#            FAULTLINE_REQUIRE_FEATURES=kernel (below)
#   masked   the same binaries with FAULTLINE_MASK_FEATURES=new, so every
#            feature newer than Linux 6.1 is hidden and the fallbacks run
#   asan     build-asan/ with ASan + UBSan; the suite again
#   minimal  build-minimal/ without the optional parts (-Dtls=disabled
#            -Dredis=disabled -Dlz4=disabled -Dsystemd=disabled
#            -Dwerror=true): the library, the CLI and faultlined build, and
#            the suite runs with
#            FAULTLINE_REQUIRE_FEATURES=kernel: tests of a part left out skip
#            and the cases that check its -EOPNOTSUPP run instead. Suites
#            'stress' and 'daemon' are left out: the slowest, and no code
#            they run differs in this build (engine, watch, faultlined and
#            the manager protocol have no optional part)
#   install  meson install into a temporary root; examples/lazy-file.c built
#            against the installed headers and library with pkg-config, and
#            run: one case, install/example (faultline.pc must also work
#            with no other .pc file: the -dev packages of the library's
#            dependencies are not needed to build against it)
#
# Strictness: every pass runs with FAULTLINE_REQUIRE_FEATURES=kernel: every
# feature the running kernel reports must be exercised, and a case skipped
# for anything but a feature the kernel lacks (huge pages not reserved, a
# tool not installed) fails. A case needing a feature the kernel lacks
# skips with the reason, so the same check passes on Debian 12's 6.1 and on
# 6.18; kernel/kernel-version fails when the probe calls a feature missing
# that the kernel's version has, and the summary names what this kernel
# lacks ("kernel 6.1.0-28-amd64: lacks wp_async,... (their cases skip)").
# FAULTLINE_REQUIRE_FEATURES=all (for a machine whose kernel has
# everything: a feature the kernel lacks fails too) is still honoured by
# the tests when set by hand, e.g.
#   FAULTLINE_REQUIRE_FEATURES=all meson test -C build
#
# Slow machines: FAULTLINE_TIMEOUT_SCALE (a number from 1 to 1000), when
# set, multiplies every deadline of the tests and the CLI's defaults; the
# passes below then also give meson the same --timeout-multiplier, so one
# variable scales both (see HACKING.md).
#
# Every test program prints "PASS|FAIL|SKIP prog/case" and appends it to
# $FL_TEST_RESULTS; each pass gets its own file, and the summary names cases
# "<pass>/prog/case". A meson test that fails without printing a FAIL line,
# or whose program itself dies (signal, sanitizer abort, timeout), counts as
# one more failed case "<pass>/meson:<test>"; one that passes or skips
# without printing any case line counts as one case too.
# A build that fails counts as a failed case "<pass>/build".
#
# The last line is "N passed, N failed, N skipped", summed over all passes.
# Exit: 0 when nothing failed and at least one case ran, 1 otherwise.
#
# As root, 2 MiB huge pages are reserved for the hugetlb tests (at least
# $FL_CHECK_HUGEPAGES, default 64) and the old count restored on exit.
# Result files and logs stay in build/check/ (and build-asan/meson-logs/).

set -uo pipefail

usage() {
	sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//'
}

all_passes="plain masked asan minimal install"
quick=0
only=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--only)
		[ $# -ge 2 ] || { echo "check.sh: --only needs a pass list" >&2; usage >&2; exit 2; }
		only=${2//,/ }
		shift
		for p in $only; do
			case " $all_passes " in
			*" $p "*) ;;
			*) echo "check.sh: unknown pass '$p' (passes: $all_passes)" >&2; exit 2 ;;
			esac
		done
		;;
	-h | --help) usage; exit 0 ;;
	*) echo "check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
if [ "$quick" = 1 ]; then
	only=plain
fi

# want PASS: is PASS one of the passes to run?
want() {
	[ -z "$only" ] || [[ " $only " == *" $1 "* ]]
}

cd "$(dirname "$0")/.." || exit 1
root=$PWD
build=$root/build
build_asan=$root/build-asan
build_minimal=$root/build-minimal
keep_dir=$build/check		# where results and logs are kept afterwards
hugepages_want=${FL_CHECK_HUGEPAGES:-64}

# Results live in a scratch directory while the passes run (a fresh meson
# setup may remove build/), and are copied to $keep_dir at the end.
work=$(mktemp -d "${TMPDIR:-/tmp}/faultline-check.XXXXXX") || exit 1
check_dir=$work/results
all_results=$check_dir/all.txt

# ---- huge pages ------------------------------------------------------------
if [ -e /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages ]; then
	hugepages_knob=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
else
	hugepages_knob=/proc/sys/vm/nr_hugepages
fi
hugepages_saved=

reserve_hugepages() {
	local have

	if [ "$(id -u)" -ne 0 ]; then
		echo "check: not root, huge pages not reserved (hugetlb cases need them)"
		return
	fi
	if ! have=$(cat "$hugepages_knob" 2>/dev/null); then
		echo "check: no 2 MiB huge page support, hugetlb cases will fail or skip"
		return
	fi
	hugepages_saved=$have
	if [ "$have" -lt "$hugepages_want" ]; then
		echo "$hugepages_want" >"$hugepages_knob" 2>/dev/null
	fi
	have=$(cat "$hugepages_knob")
	echo "check: $have huge pages of 2 MiB reserved (was $hugepages_saved)"
	if [ "$have" -lt "$hugepages_want" ]; then
		echo "check: warning: wanted $hugepages_want huge pages, the kernel gave $have"
	fi
}

restore_hugepages() {
	if [ -n "$hugepages_saved" ]; then
		if [ "$(cat "$hugepages_knob" 2>/dev/null)" != "$hugepages_saved" ]; then
			echo "$hugepages_saved" >"$hugepages_knob" 2>/dev/null ||
				echo "check: could not restore $hugepages_knob to $hugepages_saved" >&2
		fi
		hugepages_saved=
	fi
}

cleanup() {
	restore_hugepages
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- bookkeeping -----------------------------------------------------------
passes=()		# pass names, in the order they ran
declare -A pass_seconds

# record VERDICT NAME: one case line into the combined results.
record() {
	echo "$1 $2" >>"$all_results"
}

# Fold one pass's results into $all_results.
#   collect PASS RESULTS_FILE TESTLOG_JSON MESON_TEST_EXIT_CODE
collect() {
	local pass=$1 results=$2 testlog=$3 rc=$4 extra

	if [ -f "$results" ]; then
		# "VERDICT prog/case[: reason]" -> "VERDICT pass/prog/case[: reason]"
		awk -v pass="$pass" '$1 ~ /^(PASS|FAIL|SKIP)$/ {
			verdict = $1
			sub(/^[A-Z]+[ \t]+/, "")
			print verdict " " pass "/" $0
		}' "$results" >>"$all_results"
	fi

	# Tests whose outcome the case lines do not show: crashed or timed out
	# without a FAIL line, skipped or passed without any case line.
	extra=$(python3 "$root/tools/testlog-verdicts.py" "$testlog" "$pass")
	if [ -n "$extra" ]; then
		printf '%s\n' "$extra" >>"$all_results"
	fi
	if [ "$rc" -ne 0 ] && ! grep -q "^FAIL $pass/" "$all_results"; then
		record FAIL "$pass/meson-test (exit $rc)"
	fi
	if ! grep -q "^[A-Z]* $pass/" "$all_results"; then
		record FAIL "$pass/no-tests-ran"
	fi
}

# Current value of a meson option in a configured build dir.
meson_option() {
	meson introspect "$1" --buildoptions 2>/dev/null | python3 -c '
import json, sys
for o in json.load(sys.stdin):
    if o["name"] == sys.argv[1]:
        v = o["value"]
        print(",".join(v) if isinstance(v, list) else str(v).lower())' "$2"
}

# configure DIR OPTION=VALUE...: set up DIR, or bring its options up to date.
configure() {
	local dir=$1 opt name value stale=()

	shift
	if [ ! -f "$dir/build.ninja" ]; then
		rm -rf "$dir"
		meson setup "$dir" "${@/#/-D}"
		return
	fi
	for opt in "$@"; do
		name=${opt%%=*}
		value=${opt#*=}
		if [ "$(meson_option "$dir" "$name")" != "$value" ]; then
			stale+=("-D$opt")
		fi
	done
	if [ ${#stale[@]} -gt 0 ]; then
		meson configure "$dir" "${stale[@]}"
	fi
}

# build PASS DIR OPTION=VALUE...: configure and build; a failure is a case.
build_dir() {
	local pass=$1 dir=$2

	shift 2
	echo "== $pass: build $dir"
	if configure "$dir" "$@" && ninja -C "$dir"; then
		return 0
	fi
	record FAIL "$pass/build"
	return 1
}

# scale_multiplier ARRAY_NAME: with FAULTLINE_TIMEOUT_SCALE set, the meson
# test arguments in the array get --timeout-multiplier times the scale (the
# pass's own multiplier, or 1, times it), so meson's per-test timeouts grow
# with the tests' own deadlines.
scale_multiplier() {
	local -n a=$1
	local i mult=1 out=()

	[ -n "${FAULTLINE_TIMEOUT_SCALE:-}" ] || return 0
	for ((i = 0; i < ${#a[@]}; i++)); do
		if [ "${a[i]}" = --timeout-multiplier ]; then
			mult=${a[i + 1]}
			i=$((i + 1))
		else
			out+=("${a[i]}")
		fi
	done
	mult=$(awk -v m="$mult" -v s="$FAULTLINE_TIMEOUT_SCALE" 'BEGIN {
		if (s !~ /^[0-9]+(\.[0-9]*)?$/ || s + 0 < 1 || s + 0 > 1000) s = 1
		v = m * s; r = int(v); if (r < v) r++; print r }')
	a=("${out[@]}" --timeout-multiplier "$mult")
}

# test_pass PASS DIR [meson test args...] -- env assignments...
test_pass() {
	local pass=$1 dir=$2 results rc start args=() envs=()

	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	envs=("$@")
	scale_multiplier args

	results=$check_dir/$pass.results
	rm -f "$results" "$dir/meson-logs/$pass.json"
	echo "== $pass: meson test (${envs[*]})"
	start=$SECONDS
	env -u FAULTLINE_MASK_FEATURES -u FAULTLINE_REQUIRE_FEATURES \
		-u ASAN_OPTIONS -u UBSAN_OPTIONS \
		FL_TEST_RESULTS="$results" "${envs[@]}" \
		meson test -C "$dir" --no-rebuild --num-processes 2 \
		--print-errorlogs --logbase "$pass" "${args[@]}"
	rc=$?
	pass_seconds[$pass]=$((SECONDS - start))
	passes+=("$pass")
	collect "$pass" "$results" "$dir/meson-logs/$pass.json" "$rc"
}

# The install check: meson install into a temporary root, then build and
# run examples/lazy-file.c against what was installed.
install_pass() {
	local destdir=$work/root log=$check_dir/install.log start pc libso flags
	local exe=$work/lazy-file verdict=FAIL

	echo "== install: meson install, build examples/lazy-file.c with pkg-config"
	start=$SECONDS
	: >"$log"
	passes+=(install)
	if ! meson install -C "$build" --no-rebuild --destdir "$destdir" >>"$log" 2>&1; then
		echo "check: meson install failed (see $keep_dir/install.log)"
	elif ! pc=$(find "$destdir" -path '*/pkgconfig/faultline.pc' | head -n 1) || [ -z "$pc" ]; then
		echo "check: no faultline.pc installed under $destdir"
	elif ! libso=$(find "$destdir" -name 'libfaultline.so.0' | head -n 1) || [ -z "$libso" ]; then
		echo "check: no libfaultline.so.0 installed under $destdir"
	elif ! PKG_CONFIG_LIBDIR=$(dirname "$pc") pkg-config --cflags --libs faultline >/dev/null 2>>"$log"; then
		# PKG_CONFIG_LIBDIR hides every other .pc file, as on a machine
		# without the -dev packages of GnuTLS, hiredis, LZ4 and xxhash:
		# a program linking the shared library needs none of them.
		echo "check: pkg-config --cflags --libs faultline needs other modules (Requires.private?) (see $keep_dir/install.log)"
	elif ! flags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$destdir \
			PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 \
			pkg-config --cflags --libs faultline 2>>"$log"); then
		echo "check: pkg-config --cflags --libs faultline failed (see $keep_dir/install.log)"
	elif ! (set -x; "${CC:-cc}" -std=c11 -Wall -Wextra -Wpedantic -Werror \
			"$root/examples/lazy-file.c" $flags -o "$exe") >>"$log" 2>&1; then
		echo "check: examples/lazy-file.c does not build against the installed faultline (see $keep_dir/install.log)"
		tail -n 20 "$log"
	elif ! LD_LIBRARY_PATH=$(dirname "$libso") ldd "$exe" 2>>"$log" |
			grep -q "libfaultline\.so\.0 => $destdir/"; then
		echo "check: lazy-file does not load libfaultline.so.0 from $destdir"
		LD_LIBRARY_PATH=$(dirname "$libso") ldd "$exe" >>"$log" 2>&1
	elif ! LD_LIBRARY_PATH=$(dirname "$libso") timeout 60 "$exe" >>"$log" 2>&1; then
		echo "check: lazy-file failed (see $keep_dir/install.log)"
		tail -n 20 "$log"
	else
		verdict=PASS
		tail -n 1 "$log"
	fi
	record "$verdict" install/example
	echo "$verdict install/example"
	pass_seconds[install]=$((SECONDS - start))
}

# kernel_lacks: one line naming the features the running kernel lacks
# (their cases skipped in every pass), from `faultline check --json`
# (tools/kernel-lacks.py, which test/cli/cli.sh checks).
kernel_lacks() {
	local cli=$build/cli/faultline

	if [ ! -x "$cli" ]; then
		echo "kernel $(uname -r): features not probed (no $cli)"
		return
	fi
	env -u FAULTLINE_MASK_FEATURES "$cli" check --json 2>/dev/null | python3 "$root/tools/kernel-lacks.py"
}

summary() {
	local pass p f s

	echo
	echo "== summary"
	for pass in "${passes[@]}"; do
		p=$(grep -c "^PASS $pass/" "$all_results")
		f=$(grep -c "^FAIL $pass/" "$all_results")
		s=$(grep -c "^SKIP $pass/" "$all_results")
		printf '%-8s %d passed, %d failed, %d skipped (%ds)\n' \
			"$pass:" "$p" "$f" "$s" "${pass_seconds[$pass]:-0}"
	done
	p=$(grep -c '^PASS ' "$all_results")
	f=$(grep -c '^FAIL ' "$all_results")
	s=$(grep -c '^SKIP ' "$all_results")
	if [ "$f" -gt 0 ]; then
		echo "failed cases:"
		grep '^FAIL ' "$all_results"
	fi
	if [ $((p + f + s)) -eq 0 ]; then
		echo "check: no test ran"
	fi
	kernel_lacks
	echo "results and logs: $keep_dir (${SECONDS}s in all)"
	echo "$p passed, $f failed, $s skipped"
	[ "$f" -eq 0 ] && [ $((p + f + s)) -gt 0 ]
}

finish() {
	# Restore huge pages before the summary so nothing prints after its
	# last line.
	restore_hugepages
	mkdir -p "$keep_dir" && rm -f "$keep_dir"/* && cp "$check_dir"/* "$keep_dir"/
	summary
	exit $?
}

# ---- the passes ------------------------------------------------------------
mkdir -p "$check_dir" || exit 1
: >"$all_results"

if want plain || want masked || want install; then
	start=$SECONDS
	if ! build_dir plain "$build" werror=true; then
		passes+=(plain)
		pass_seconds[plain]=$((SECONDS - start))
		finish
	fi
	echo "check: plain build took $((SECONDS - start))s"
fi

reserve_hugepages

if want plain; then
	test_pass plain "$build" -- FAULTLINE_REQUIRE_FEATURES=kernel
fi

# The ABI is the same whatever the mask or the sanitizers: checked once
# (and again in the minimal pass, whose library is built differently).
if want masked; then
	test_pass masked "$build" --no-suite abi -- \
		FAULTLINE_MASK_FEATURES=new FAULTLINE_REQUIRE_FEATURES=kernel
fi

if want asan; then
	start=$SECONDS
	if build_dir asan "$build_asan" b_sanitize=address,undefined b_lundef=false \
			c_args=-fno-omit-frame-pointer; then
		echo "check: asan build took $((SECONDS - start))s"
		test_pass asan "$build_asan" --no-suite abi --timeout-multiplier 3 -- \
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			FAULTLINE_REQUIRE_FEATURES=kernel
	else
		passes+=(asan)
		pass_seconds[asan]=$((SECONDS - start))
	fi
fi

# Without TLS, Redis and LZ4 (see the top of this file for the suites left out).
if want minimal; then
	start=$SECONDS
	if build_dir minimal "$build_minimal" tls=disabled redis=disabled lz4=disabled systemd=disabled werror=true; then
		echo "check: minimal build took $((SECONDS - start))s"
		test_pass minimal "$build_minimal" --no-suite stress --no-suite daemon -- \
			FAULTLINE_REQUIRE_FEATURES=kernel
	else
		passes+=(minimal)
		pass_seconds[minimal]=$((SECONDS - start))
	fi
fi

if want install; then
	install_pass
fi
finish
