#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-layers.sh LIBDIR [STAMP]: the layering rule of lib/, checked by the
# build (lib/meson.build runs it on every build).
#
# Each lib/<layer>/meson.build names the layers it may include on its line
# "# May include: a, b, c." and gives the compiler exactly those folders, so an
# include of an upper layer's header by bare name fails to compile. What the
# compiler cannot see is a relative path that climbs out of the folder
# ("../engine/engine-internal.h") or names another layer's folder: this
# script refuses both, and checks that each layer's include_directories match
# its "May include" line.

set -uo pipefail
libdir=${1:?usage: check-layers.sh LIBDIR [STAMP]}
stamp=${2:-}
bad=0

for build in "$libdir"/*/meson.build; do
	dir=$(dirname "$build")
	layer=$(basename "$dir")
	allowed=$(sed -n 's/^# May include: *//p' "$build" | tr -d '.' | tr ',' ' ')
	case $allowed in nothing*) allowed= ;; esac
	# The include_directories of the layer: its own and the allowed ones.
	want=$(printf '%s\n' inc "${layer}_inc" $(for a in $allowed; do echo "${a}_inc"; done) | sort | tr '\n' ' ')
	have=$(sed -n 's/^[[:space:]]*include_directories : \[\(.*\)\],*$/\1/p' "$build" |
		tr -d ' ' | tr ',' '\n' | sort | tr '\n' ' ')
	if [ "$want" != "$have" ]; then
		echo "check-layers: $build: include_directories [$have] do not match 'May include: $allowed'" >&2
		bad=1
	fi
	for f in "$dir"/*.c "$dir"/*.h "$dir"/*/*.h; do
		[ -e "$f" ] || continue
		# Quoted includes may name a file of this folder or of a folder the
		# compiler was given, never a path that climbs or names a layer.
		includes=$(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
		if [ $? -gt 1 ]; then
			echo "check-layers: cannot read $f" >&2
			bad=1
			continue
		fi
		[ -n "$includes" ] || continue
		while IFS= read -r line; do
			path=${line#*\"}
			path=${path%%\"*}
			first=${path%%/*}
			if [[ $path == *..* ]] || { [[ $path == */* ]] && [ -d "$libdir/$first" ] && [ "$first" != compat ]; }; then
				echo "check-layers: $f: '#include \"$path\"' reaches around the layers (layer $layer may include: ${allowed:-nothing})" >&2
				bad=1
			fi
		done <<<"$includes"
	done
done

if [ "$bad" -ne 0 ]; then
	exit 1
fi
if [ -n "$stamp" ]; then
	: >"$stamp"
fi
