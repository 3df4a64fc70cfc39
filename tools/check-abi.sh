#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# ABI checks on the built shared library (meson test suite 'abi').
#
#   tools/check-abi.sh SOURCE_ROOT LIBFAULTLINE_SO [PROJECT_VERSION [VERSION_H]]
#   tools/check-abi.sh --update-baseline SOURCE_ROOT LIBFAULTLINE_SO
#
# Checks, each reported as one "PASS abi/<check>" or "FAIL abi/<check>" line
# on stdout and appended to $FL_TEST_RESULTS (the test harness's format):
#   map-version     the newest node of lib/libfaultline.map is
#                   FAULTLINE_<major>.<minor> of the project version, and no
#                   node is newer than it
#   header-version  the generated <faultline/version.h> (VERSION_H; by
#                   default include/faultline/version.h in the build tree
#                   next to LIBFAULTLINE_SO's lib/) says the project version,
#                   and no source header defines FL_VERSION_* by hand
#   map-symbols     the functions declared with FL_API in
#                   include/faultline/*.h are exactly the map's global symbols
#   exports         the library exports exactly those functions (nm -D), each
#                   with a FAULTLINE_* symbol version, and nothing else
#   soname          the SONAME is libfaultline.so.0
#   abidiff         abidiff(1) of abi/libfaultline.abi (the ABI of the last
#                   release, written by abidw) against LIBFAULTLINE_SO finds
#                   no incompatible change: no removed or changed function or
#                   variable, and no changed type the public headers define,
#                   except structs that begin with size_t sz growing at
#                   their end. Added functions and enumerators are fine.
#
# The baseline: abi/libfaultline.abi describes the last release (0.1.0;
# see abi/README.md).
# When a release is tagged (and, before 1.0, after a deliberate ABI change
# is merged), regenerate it from a build of that commit and commit it:
#
#   meson setup build && ninja -C build
#   tools/check-abi.sh --update-baseline . build/lib/libfaultline.so
#
# abidw reads the DWARF of the library: the build must have debug info
# (the default buildtype, debugoptimized, has -g; a stripped or -g0 library
# fails the abidiff check rather than passing it blind).
#
# Details of a failure go to stderr as "# ..." lines.
# Exit: 0 all passed, 1 any failed, 99 bad usage or missing tools.

set -uo pipefail

EXPECTED_SONAME=libfaultline.so.0	# changing it is an ABI break: do it here, on purpose

update_baseline=0
if [ "${1:-}" = --update-baseline ]; then
	update_baseline=1
	shift
fi
if [ $# -lt 2 ] || [ $# -gt 4 ] || { [ "$update_baseline" = 1 ] && [ $# -ne 2 ]; }; then
	echo "usage: $0 SOURCE_ROOT LIBFAULTLINE_SO [PROJECT_VERSION [VERSION_H]]" >&2
	echo "       $0 --update-baseline SOURCE_ROOT LIBFAULTLINE_SO" >&2
	exit 99
fi
src=$1
lib=$2
version=${3:-}
version_h=${4:-$(dirname "$lib")/../include/faultline/version.h}
map=$src/lib/libfaultline.map
headers=("$src"/include/faultline/*.h)
baseline=$src/abi/libfaultline.abi

# abidw/abidiff options shared by writing and reading the baseline: only
# types the public headers define count (the library's internal structs,
# the kernel's and libc's are not our ABI), and no build paths go into the
# file so that it is the same from any checkout.
abi_common=(--headers-dir "$src/include/faultline" --drop-private-types --exported-interfaces-only)

# abidw silently writes a near-empty ABI (symbols, no types) for a library
# without DWARF, and abidiff then compares nothing: refuse instead.
# (grep without -q: with pipefail, grep -q exiting at the first match
# would make readelf die of SIGPIPE and the pipeline fail at random.)
has_debug_info() {
	readelf -S "$1" 2>/dev/null | grep '[[:space:]]\.debug_info[[:space:]]' >/dev/null
}

if [ "$update_baseline" = 1 ]; then
	if ! has_debug_info "$lib"; then
		echo "# check-abi: $lib has no debug info (build with -g, e.g. buildtype debugoptimized)" >&2
		exit 1
	fi
	if ! command -v abidw >/dev/null; then
		echo "# check-abi: abidw not found (Debian: abigail-tools, see tools/install-deps.sh)" >&2
		exit 99
	fi
	mkdir -p "$(dirname "$baseline")" || exit 99
	if ! abidw "${abi_common[@]}" --no-corpus-path --no-comp-dir-path --short-locs \
			--out-file "$baseline.tmp" "$lib"; then
		rm -f "$baseline.tmp"
		echo "# check-abi: abidw failed on $lib (built with debug info?)" >&2
		exit 1
	fi
	mv "$baseline.tmp" "$baseline" || exit 1
	echo "check-abi: wrote $baseline from $lib; review and commit it"
	exit 0
fi

for tool in nm readelf perl abidiff; do
	if ! command -v "$tool" >/dev/null; then
		echo "# check-abi: $tool not found (see tools/install-deps.sh)" >&2
		exit 99
	fi
done
for f in "$map" "$lib" "${headers[0]}" "$baseline"; do
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
# The version macros are generated (include/faultline/version.h.in, by
# meson's configure_file): check what was generated, and that nobody wrote
# them by hand into a source header again.
ok=1
if [ ! -f "$version_h" ]; then
	note "header-version: generated header $version_h not found"
	ok=0
else
	for part in MAJOR:$major MINOR:$minor PATCH:$patch STRING:\"$version\"; do
		name=${part%%:*}
		want=${part#*:}
		have=$(sed -n "s/^#define[[:space:]]\{1,\}FL_VERSION_$name[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/p" \
			"$version_h")
		if [ "$have" != "$want" ]; then
			note "header-version: FL_VERSION_$name in $version_h is '${have}', project version $version says $want"
			ok=0
		fi
	done
fi
handwritten=$(grep -l '^#define[[:space:]]\{1,\}FL_VERSION_' "${headers[@]}" 2>/dev/null || true)
if [ -n "$handwritten" ]; then
	note "header-version: FL_VERSION_* defined by hand in" $handwritten "(it is generated into version.h)"
	ok=0
fi
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

# ---- abidiff -------------------------------------------------------------
# abidiff's exit status is a bit field: 1 error, 2 usage error, 4 the ABIs
# differ, 8 an incompatible change (today libabigail sets it only for a
# removed symbol). A 4 alone may still be a changed struct layout, so the
# leaf-change report decides: a removed or changed function or variable
# fails, and so does every changed type, except a struct that starts with
# `size_t sz` (options, statistics, progress, ops, and fl_image_info:
# passed by pointer, the library reads and writes only what the caller's sz
# covers) growing by members inserted at or after its old end. Added
# functions and enumerators pass. (A libabigail suppression with
# has_data_member_inserted_at = end was tried: abigail-tools 2.2 then also
# hid a retyped member of the same struct.)
sz_structs=$(perl -0777 -ne '
	s{/\*.*?\*/}{ }gs;
	while (/\bstruct\s+(fl_\w+)\s*\{\s*size_t\s+sz\s*;/g) { print "$1\n" }' "${headers[@]}" | sort -u)
abidiff_out=$(abidiff --headers-dir2 "$src/include/faultline" --drop-private-types --exported-interfaces-only \
	--leaf-changes-only --no-show-locs "$baseline" "$lib" 2>&1)
rc=$?
ok=1
if ! has_debug_info "$lib"; then
	note "abidiff: $lib has no debug info: build with -g (buildtype debugoptimized or debug)"
	ok=0
elif ((rc & 3)); then
	note "abidiff: abidiff failed (exit $rc)"
	ok=0
elif ((rc & 8)); then
	note "abidiff: incompatible ABI change against abi/libfaultline.abi (exit $rc)"
	ok=0
elif ((rc & 4)); then
	# Prints one line per change that is not allowed; nothing when the
	# report holds only additions and sz-struct growth.
	bad=$(printf '%s\n' "$abidiff_out" | SZ_STRUCTS="$sz_structs" perl -ne '
		BEGIN { %sz = map { $_ => 1 } split /\n/, $ENV{SZ_STRUCTS}; }
		chomp;
		if (/summary: (\d+) Removed, (\d+) Changed/) {
			print "$_\n" if $1 || $2;
			next;
		}
		next if /^(Leaf changes|Changed leaf types) summary/ || /^\s*$/;
		if (/^\x27struct (\w+)\x27 changed:$/) {
			$type = $1; $oldsize = undef;
			print "$_ (a struct without size_t sz first)\n" unless $sz{$type};
			next;
		}
		if (/^\x27/ && / changed:$/) {	# any other type: enum value, union, typedef...
			$type = undef;
			print "$_\n";
			next;
		}
		if (/^\d+ Added function/ || /^\d+ Added variable/) { $type = undef; $added = 1; next; }
		if ($added && /^\s+\[A\]/) { next; }
		if (defined $type && $sz{$type}) {
			if (/^\s+type size changed from (\d+) to (\d+) \(in bits\)$/) {
				$oldsize = $1;
				print "$type shrank: $_\n" if $2 < $1;
				next;
			}
			next if /^\s+\d+ data member insertions?:$/;
			if (/^\s+\x27.*\x27, at offset (\d+) \(in bits\)$/) {
				print "$type: member inserted before its old end: $_\n"
					unless defined $oldsize && $1 >= $oldsize;
				next;
			}
		}
		print "$_\n";')
	if [ -n "$bad" ]; then
		note "abidiff: changes against abi/libfaultline.abi that are not compatible additions (exit $rc):"
		printf '%s\n' "$bad" | sed 's/^/#     /' >&2
		ok=0
	else
		note "abidiff: compatible additions only (a new release regenerates the baseline with --update-baseline)"
	fi
fi
if [ "$ok" = 0 ]; then
	printf '%s\n' "$abidiff_out" | sed 's/^/# /' >&2
	note "abidiff: if the change is deliberate (pre-1.0, or a new soversion), regenerate the baseline:"
	note "    tools/check-abi.sh --update-baseline $src $lib"
	record FAIL abidiff
else
	record PASS abidiff
fi

exit "$failed"
