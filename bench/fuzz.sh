#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/fuzz.sh: AFL++ persistent mode with and without reset points.
#
#   bench/fuzz.sh [--build DIR] [--heap MIB] [--seconds N] [--json]
#
# Builds examples/fuzz-target.c with afl-cc against DIR's libfaultline
# (default build/), then runs afl-fuzz on it for N seconds (default 60) per
# mode, alone on the machine, with a heap of MIB (default 512):
#   reset     after every input, fl_reset_point_reset() puts back the pages
#             it wrote (the target's normal mode);
#   no-reset  FUZZ_NO_RESET=1: nothing is reset, so inputs see what earlier
#             ones left (state leaks; AFL's stability shows it).
# Prints execs_per_sec and stability of each (from fuzzer_stats) and
# ratio = reset / no-reset; goal: ratio >= 0.5 with 100% stability in reset
# mode. Needs afl-cc and afl-fuzz (tools/install-deps.sh installs AFL++).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build heap=512 secs=60 json=false
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$(cd "$2" && pwd); shift ;;
	--heap) heap=$2; shift ;;
	--seconds) secs=$2; shift ;;
	--json) json=true ;;
	-h|--help) sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $heap$secs in *[!0-9]*) echo "bench/fuzz.sh: --heap and --seconds want numbers" >&2; exit 2 ;; esac
for p in afl-cc afl-fuzz; do
	command -v $p > /dev/null || { echo "bench/fuzz.sh: $p not found (apt-get install afl++)" >&2; exit 1; }
done
[ -e "$build/lib/libfaultline.so" ] || { echo "bench/fuzz.sh: no $build/lib/libfaultline.so (build first)" >&2; exit 1; }
T=$(mktemp -d /var/tmp/fl-bench-fuzz-XXXXXX)
trap 'rm -rf "$T"' EXIT
afl-cc -O2 "$root/examples/fuzz-target.c" -I"$root/include" -I"$build/include" -L"$build/lib" \
	-Wl,-rpath,"$build/lib" -lfaultline -o "$T/target" > "$T/build.log" 2>&1 ||
	{ cat "$T/build.log" >&2; exit 1; }
mkdir -p "$T/in"
printf 'set a hello\nget a\ncount\n' > "$T/in/few-set"
printf 'get k00000001\nset k00000001 changed\nget k00000001\ndel k00000002\nget k00000002\ncount\n' \
	> "$T/in/few-overwrite"
printf 'del k00000003\ndel k00000004\nset k00000003 back\ngrow 10\ntouch 10 1\ncount\n' > "$T/in/mixed"

# run MODE: afl-fuzz for $secs seconds; prints "execs_per_sec stability var_bytes".
run() {
	local out=$T/out-$1 noreset=0
	[ "$1" = no-reset ] && noreset=1
	FUZZ_NO_RESET=$noreset AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
		AFL_NO_AFFINITY=1 AFL_SKIP_CRASHES=1 timeout $((secs + 120)) \
		afl-fuzz -i "$T/in" -o "$out" -V "$secs" -t 2000 -- "$T/target" --heap "$heap" \
		> "$T/$1.log" 2>&1 || { tail -n 20 "$T/$1.log" >&2; exit 1; }
	local s=$out/default/fuzzer_stats
	echo "$(sed -n 's/^execs_per_sec *: *//p' "$s") $(sed -n 's/^stability *: *//p' "$s")" \
		"$(sed -n 's/^var_byte_count *: *//p' "$s")"
}
read -r reset_eps reset_stab reset_var < <(run reset)
read -r noreset_eps noreset_stab noreset_var < <(run no-reset)
ratio=$(awk -v a="$reset_eps" -v b="$noreset_eps" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
met=$(awk -v r="$ratio" -v s="$reset_stab" 'BEGIN { print (r >= 0.5 && s == "100.00%") ? "true" : "false" }')
if $json; then
	printf '{"heap_mib": %s, "seconds": %s, "reset_execs_per_sec": %s, "reset_stability": "%s", ' \
		"$heap" "$secs" "$reset_eps" "$reset_stab"
	printf '"reset_var_bytes": %s, "noreset_execs_per_sec": %s, "noreset_stability": "%s", ' \
		"${reset_var:-null}" "$noreset_eps" "$noreset_stab"
	printf '"noreset_var_bytes": %s, "ratio": %s, "goal_ratio": 0.5, ' "${noreset_var:-null}" "$ratio"
	printf '"goal_met": %s}\n' "$met"
else
	echo "AFL++ persistent mode, $heap MiB heap, $secs s per mode:"
	echo "  with reset points: $reset_eps execs/s, stability $reset_stab ($reset_var variable bytes)"
	echo "  without resets:    $noreset_eps execs/s, stability $noreset_stab ($noreset_var variable bytes)"
	echo "  ratio $ratio (goal >= 0.5 with 100% stability): $([ "$met" = true ] && echo ok || echo MISSED)"
fi
