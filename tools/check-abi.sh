#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# ABI checks on the built shared library (meson test suite 'abi').
#
#   tools/check-abi.sh SOURCE_ROOT LIBFAULTLINE_SO [PROJECT_VERSION]
#
# Checks, each reported as one "PASS abi/<check>" or "FAIL abi/<check>" line
# on stdout and appended to $FL_TEST_RESULTS (the test harness's format):
#   map-version     the newest node of lib/libfaultline.map is
#                   FAULTLINE_<major>.<minor> of the project version, and no
#                   node is newer than it
#   header-version  FL_VERSION_MAJOR/MINOR/PATCH in include/faultline/common.h
#                   equal the project version
#   map-symbols     the functions declared with FL_API in
#                   include/faultline/*.h are exactly the map's global symbols
#   exports         the library exports exactly those functions (nm -D), each
#                   with a FAULTLINE_* symbol version, and nothing else
#   soname          the SONAME is libfaultline.so.0
# Details of a failure go to stderr as "# ..." lines.
# Exit: 0 all passed, 1 any failed, 99 bad usage or missing tools.

set -uo pipefail

EXPECTED_SONAME=libfaultline.so.0	# changing it is an ABI break: do it here, on purpose

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 SOURCE_ROOT LIBFAULTLINE_SO [PROJECT_VERSION]" >&2
	exit 99
fi
src=$1
lib=$2
version=${3:-}
map=$src/lib/libfaultline.map
headers=("$src"/include/faultline/*.h)

for tool in nm readelf perl; do
	if ! command -v "$tool" >/dev/null; then
		echo "# check-abi: $tool not found" >&2
		exit 99
	fi
done
for f in "$map" "$lib" "${headers[0]}"; do
	if [ ! -f "$f" ]; then
		echo "# check-abi: $f not found" >&2
		exit 99
	fi
done
if [ -z "$version" ]; then
	# Not given by meson: read project(..., version : 'X.Y.Z') from meson.build.
	version=$(perl -0777 -ne "print \$1 if /\\bproject\\s*\\(.*?\\bversion\\s*:\\s*'([^']*)'/s" \
		"$src/meson.build")
fi
if ! [[ $version =~ ^([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
	echo "# check-abi: cannot parse project version '$version'" >&2
	exit 99
fi
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
patch=${BASH_REMATCH[3]}

failed=0

record() {	# record VERDICT CHECK
	local line="$1 abi/$2"

	echo "$line"
	if [ -n "${FL_TEST_RESULTS:-}" ]; then
		echo "$line" >>"$FL_TEST_RESULTS"
	fi
	if [ "$1" = FAIL ]; then
		failed=1
	fi
}

note() {
	echo "# $*" >&2
}

# Lines in $1 that are not in $2 (both sorted, one name per line).
only_in() {
	comm -23 <(printf '%s\n' "$1" | sed '/^$/d') <(printf '%s\n' "$2" | sed '/^$/d')
}

# ---- parse the version script ------------------------------------------
# Prints "node NAME" for each version node, in order, then "sym NAME" for
# each global symbol (any node). Comments (# and /* */) are ignored; a
# pattern with wildcards in a global section is printed as-is so that it
# never matches a declared name.
map_parsed=$(perl -0777 -ne '
	s{/\*.*?\*/}{}gs;
	s{#[^\n]*}{}g;
	while (/([\w.]+)\s*\{(.*?)\}\s*[\w.]*\s*;/gs) {
		my ($node, $body) = ($1, $2);
		print "node $node\n";
		my $scope = "global";
		for my $tok (split /;/, $body) {
			$tok =~ s/^\s+|\s+$//g;
			if ($tok =~ s/^(global|local)\s*:\s*//) {
				$scope = $1;
			}
			next if $tok eq "";
			print "sym $tok\n" if $scope eq "global";
		}
	}' "$map")
map_nodes=$(printf '%s\n' "$map_parsed" | sed -n 's/^node //p')
map_syms=$(printf '%s\n' "$map_parsed" | sed -n 's/^sym //p' | sort -u)

# ---- map-version ---------------------------------------------------------
want_node="FAULTLINE_$major.$minor"
last_node=$(printf '%s\n' "$map_nodes" | sed '/^$/d' | tail -n 1)
ok=1
if [ -z "$last_node" ]; then
	note "map-version: no version node found in $map"
	ok=0
elif [ "$last_node" != "$want_node" ]; then
	note "map-version: newest node in lib/libfaultline.map is $last_node," \
		"project version $version needs $want_node"
	ok=0
fi
while read -r node; do
	[ -n "$node" ] || continue
	if ! [[ $node =~ ^FAULTLINE_([0-9]+)\.([0-9]+)$ ]]; then
		note "map-version: node $node is not named FAULTLINE_<major>.<minor>"
		ok=0
		continue
	fi
	if ((BASH_REMATCH[1] > major ||
	     (BASH_REMATCH[1] == major && BASH_REMATCH[2] > minor))); then
		note "map-version: node $node is newer than project version $version"
		ok=0
	fi
done <<<"$map_nodes"
if [ "$ok" = 1 ]; then record PASS map-version; else record FAIL map-version; fi

# ---- header-version ------------------------------------------------------
ok=1
for part in MAJOR:$major MINOR:$minor PATCH:$patch; do
	name=${part%%:*}
	want=${part#*:}
	have=$(sed -n "s/^#define[[:space:]]\{1,\}FL_VERSION_$name[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p" \
		"$src/include/faultline/common.h")
	if [ "$have" != "$want" ]; then
		note "header-version: FL_VERSION_$name is '${have}', project version $version says $want"
		ok=0
	fi
done
if [ "$ok" = 1 ]; then record PASS header-version; else record FAIL header-version; fi

# ---- map-symbols ---------------------------------------------------------
# Names of the functions declared with FL_API: comments and preprocessor
# lines (which define FL_API itself) are dropped, then each "FL_API ...
# name(" gives one name. Declarations may span lines.
api_syms=$(perl -0777 -ne '
	s{/\*.*?\*/}{ }gs;
	s{//[^\n]*}{}g;
	s{^[ \t]*#(?:[^\n]*\\\n)*[^\n]*}{}gm;
	while (/\bFL_API\b[^;{}]*?\b(\w+)\s*\(/gs) {
		print "$1\n";
	}' "${headers[@]}" | sort -u)
ok=1
if [ -z "$api_syms" ]; then
	note "map-symbols: no FL_API declarations found in include/faultline/*.h"
	ok=0
fi
missing=$(only_in "$api_syms" "$map_syms")
stale=$(only_in "$map_syms" "$api_syms")
if [ -n "$missing" ]; then
	note "map-symbols: declared FL_API but not in lib/libfaultline.map:" $missing
	ok=0
fi
if [ -n "$stale" ]; then
	note "map-symbols: in lib/libfaultline.map but not declared FL_API:" $stale
	ok=0
fi
if [ "$ok" = 1 ]; then record PASS map-symbols; else record FAIL map-symbols; fi

# ---- exports -------------------------------------------------------------
# nm -D --format=posix prints "name[@@VERSION] type value size". Absolute
# symbols (type A) named like a version node are the version definitions.
ok=1
if ! nm_out=$(nm -D --defined-only --format=posix "$lib"); then
	note "exports: nm -D failed on $lib"
	ok=0
fi
exported=$(printf '%s\n' "$nm_out" | awk '
	NF >= 2 && !($2 == "A" && $1 ~ /^FAULTLINE_[0-9.]+(@@?FAULTLINE_[0-9.]+)?$/) {
		print $1
	}' | sort -u)
exported_names=$(printf '%s\n' "$exported" | sed 's/@.*//' | sort -u)
missing=$(only_in "$api_syms" "$exported_names")
extra=$(only_in "$exported_names" "$api_syms")
unversioned=$(printf '%s\n' "$exported" | grep -v '@@\?FAULTLINE_[0-9]\+\.[0-9]\+$' || true)
if [ -n "$missing" ]; then
	note "exports: declared FL_API but not exported by $lib:" $missing
	ok=0
fi
if [ -n "$extra" ]; then
	note "exports: exported by $lib but not declared FL_API:" $extra
	ok=0
fi
if [ -n "$unversioned" ]; then
	note "exports: exported without a FAULTLINE_* symbol version:" $unversioned
	ok=0
fi
if [ "$ok" = 1 ]; then record PASS exports; else record FAIL exports; fi

# ---- soname --------------------------------------------------------------
soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = "$EXPECTED_SONAME" ]; then
	record PASS soname
else
	note "soname: $lib has SONAME '${soname}', expected $EXPECTED_SONAME"
	record FAIL soname
fi

exit "$failed"
