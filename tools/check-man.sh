#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-man.sh [SRCDIR] — check the man pages against the public headers.
#
# For every function the public headers declare (FL_API prototypes and the
# static inline helpers in include/faultline/*.h) there must be a page
# man/<name>.3, and the SYNOPSIS of that page (or of the page it is a
# symbolic link to) must show the prototype exactly as the header declares
# it.
#
# Every page in man/ is then checked:
#   - it renders with `man -l man/PAGE` from the source tree with nothing on
#     stderr (a ".so man3/x.3" page does not: man -l resolves it against the
#     current directory; an alias page is a symbolic link to its page);
#   - it renders with `groff -man -Tutf8 -ww -z` without a single warning
#     (a link page is checked through the page it names);
#   - rendered as ASCII, no line is wider than 80 columns (no-fill text
#     such as SYNOPSIS and EXAMPLE does not wrap);
#   - .TH names the file and its section; NAME, SYNOPSIS (sections 1 and 3),
#     DESCRIPTION, RETURN VALUE (section 3) and SEE ALSO are present;
#     section 3 pages include <faultline/faultline.h>;
#   - a link names, in the same directory, an existing page that is not a
#     link and whose NAME section lists it; a page that is a .so request is
#     refused;
#   - every faultline page it cross-references (.BR fl_x (3)) exists;
#   - man/meson.build installs it (a link: as ['link', 'page'] in man_links,
#     installed with install_symlink).
# And every FL_* constant of the headers is named by some page.
#
# Output: "PASS man/<name>" or "FAIL man/<name>" per page or missing page on
# stdout (<name> is the function for section 3, e.g. man/fl_uffd_copy, and
# the file name otherwise, e.g. man/faultline.7), also appended to $FL_TEST_RESULTS when set (the C tests' format);
# reasons go to stderr as "# ..." lines. Exit 0 when everything passed, 1
# on any failure, 99 when the check itself cannot run.

set -u

src=$(cd "${1:-$(dirname "$0")/..}" 2>/dev/null && pwd) || {
	printf '# usage: %s [SRCDIR]\n' "$0" >&2
	exit 99
}
mandir=$src/man
incdir=$src/include/faultline
results=${FL_TEST_RESULTS:-}
passed=0
failed=0

say() { printf '# %s\n' "$*" >&2; }

record() {
	printf '%s man/%s\n' "$1" "$2"
	if [ -n "$results" ]; then
		printf '%s man/%s\n' "$1" "$2" >>"$results"
	fi
	if [ "$1" = PASS ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
}

if [ ! -d "$mandir" ] || [ ! -d "$incdir" ]; then
	say "usage: $0 [SRCDIR]  (no man/ or include/faultline/ under $src)"
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fl-check-man.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

# ---- the functions the headers declare, with their prototypes ------------
#
# One line per function: "name<TAB>prototype", the prototype with FL_API /
# "static inline" removed and white space collapsed, ending in ";".
extract_prototypes() {
	awk '
	function flush(text,   name, t) {
		gsub(/[ \t]+/, " ", text)
		sub(/^ /, "", text)
		sub(/ ?;? ?$/, "", text)
		gsub(/\( /, "(", text)
		gsub(/ \)/, ")", text)
		t = text
		sub(/\(.*/, "", t)
		n = split(t, words, /[ *]+/)
		name = words[n]
		printf "%s\t%s;\n", name, text
	}
	/^FL_API / {
		acc = $0
		sub(/^FL_API /, "", acc)
		while (acc !~ /;/ && (getline line) > 0)
			acc = acc " " line
		sub(/;.*/, "", acc)
		flush(acc)
		next
	}
	/^static inline / {
		acc = $0
		sub(/^static inline /, "", acc)
		while (acc !~ /\{/ && (getline line) > 0)
			acc = acc " " line
		sub(/\{.*/, "", acc)
		flush(acc)
		next
	}' "$@"
}

extract_prototypes "$incdir"/*.h | sort -u >"$tmp/protos"
nfl_api=$(grep -hc '^FL_API ' "$incdir"/*.h | awk '{ s += $1 } END { print s }')
nfound=$(grep -c . "$tmp/protos")
if [ "$nfound" -lt "$nfl_api" ] || [ "$nfl_api" -eq 0 ]; then
	say "could not parse the headers: $nfl_api FL_API lines, $nfound prototypes"
	exit 99
fi

# ---- the renderer -------------------------------------------------------
if ! command -v groff >/dev/null 2>&1; then
	say "groff is not installed (apt-get install groff-base): pages cannot be checked"
	record FAIL groff
	exit 1
fi

# A man1/ man3/ man7/ tree of the pages, laid out as they are installed,
# for groff's checks (link pages resolve to their page through it too).
for sec in 1 3 5 7 8; do
	mkdir -p "$tmp/tree/man$sec"
done
shopt -s nullglob
pages=("$mandir"/*.[13578])
shopt -u nullglob
for p in "${pages[@]}"; do
	b=${p##*/}
	ln -s "$p" "$tmp/tree/man${b##*.}/$b"
done

# The checks below parse pages with bash itself rather than one grep per
# question: the suite runs on loaded CI machines, where every process
# spawned costs.

declare -A PROTO=() TEXT=() NORM=()
while IFS=$'\t' read -r fn proto; do
	PROTO[$fn]=$proto
done <"$tmp/protos"
meson_list=$(<"$mandir/meson.build")
# The pages install_man() installs (links are installed apart).
install_list=${meson_list#*install_man(}
install_list=${install_list%%)*}

# is_so FILE: true for a page whose only request is .so (comments and
# blank lines aside): such a page renders only from a man<section>/ tree.
is_so() {
	local line n=0 first=
	local -a lines
	mapfile -t lines <"$1"
	for line in "${lines[@]}"; do
		[[ $line == '.\"'* || $line =~ ^[[:space:]]*$ ]] && continue
		n=$((n + 1))
		[ $n = 1 ] && first=$line
	done
	[ $n = 1 ] && [[ $first == '.so '* ]]
}

# is_link FILE: true for a symbolic link; sets LINK_TARGET (what it points
# to, as written).
is_link() {
	LINK_TARGET=
	[ -L "$1" ] || return 1
	LINK_TARGET=$(readlink "$1")
	return 0
}

# man -l renders pages the way a reader of a checkout does; "man" may be
# missing on a minimal system, where groff's checks below still run.
have_man=0
command -v man >/dev/null 2>&1 && have_man=1

# The preprocessor options a page asks for on its first line ('\" t: tbl),
# as man(1) honours them.
preproc() {
	local first
	read -r first <"$1" || true
	case $first in
	"'\\\" "*t*) printf '%s\n' -t ;;
	esac
}

# render REL (a path in the tree) as plain ASCII; sets TEXT_FILE and NORM_TEXT
# (the text with white space collapsed), both cached per page.
render_text() {
	local rel=$1 base=${1##*/}
	if [ -z "${TEXT[$base]+set}" ]; then
		mkdir -p "$tmp/text"
		(cd "$tmp/tree" && groff $(preproc "$mandir/$base") -man -Tascii -P-cbou "$rel" 2>/dev/null) \
			>"$tmp/text/$base"
		TEXT[$base]=$tmp/text/$base
		NORM[$base]=$(tr -s ' \t\n' '   ' <"$tmp/text/$base" | sed 's/( /(/g; s/ )/)/g')
	fi
	TEXT_FILE=${TEXT[$base]}
	NORM_TEXT=${NORM[$base]}
}

# parse_page FILE: sets HEADS (the .SH titles, one per line), NAME_TEXT,
# TH_LINE, HAS_INCLUDE and REFS (fl_*/faultline* pages cross-referenced
# with .BR, as name.section).
parse_page() {
	local line in_name=0
	local -a lines
	mapfile -t lines <"$1"
	HEADS= NAME_TEXT= TH_LINE= HAS_INCLUDE=0 REFS=
	for line in "${lines[@]}"; do
		case $line in
		.TH\ *) TH_LINE=$line ;;
		.SH\ *)
			line=${line#.SH }
			line=${line//\"/}
			HEADS+="$line"$'\n'
			[ "$line" = NAME ] && in_name=1 || in_name=0
			continue ;;
		esac
		[ $in_name = 1 ] && NAME_TEXT+="$line "
		[[ $line == *'#include <faultline/faultline.h>'* ]] && HAS_INCLUDE=1
		if [[ $line =~ ^\.BR\ (fl_[a-z0-9_]*|faultline[a-z-]*)\ \(([0-9])\) ]]; then
			REFS+="${BASH_REMATCH[1]}.${BASH_REMATCH[2]} "
		fi
	done
}

check_page() {
	local p=$1 base name sec rel ok=1 target tfile tbase warn h ref line
	local -a wide
	base=${p##*/}
	name=${base%.*}
	sec=${base##*.}
	rel=man$sec/$base

	if [ $have_man = 1 ]; then
		warn=$(cd "$mandir" && MANPAGER=cat PAGER=cat MANWIDTH=80 man -l "$base" 2>&1 >/dev/null)
		if [ -n "$warn" ] || ! (cd "$mandir" && MANPAGER=cat PAGER=cat man -l "$base" >/dev/null 2>&1); then
			say "$base: man -l man/$base does not render from the source tree:"
			printf '%s\n' "$warn" | sed 's/^/#   /' >&2
			ok=0
		fi
	fi

	if is_so "$p"; then
		say "$base: a .so page does not render from the source tree: make it a symbolic link to its page"
		ok=0
	fi

	if is_link "$p"; then
		# The target is rendered (and checked) as a page of its own.
		target=$LINK_TARGET
		tbase=${target##*/}
		tfile=$mandir/$tbase
		if [[ $meson_list != *"['$base', '$target']"* ]]; then
			say "$base: not in man_links of man/meson.build as ['$base', '$target']"
			ok=0
		fi
		if [ "$target" != "$tbase" ] || [ "${tbase##*.}" != "$sec" ]; then
			say "$base: links to $target, not to a page of section $sec in the same directory"
			ok=0
		elif [ ! -f "$tfile" ]; then
			say "$base: links to $target, which does not exist"
			ok=0
		elif is_link "$tfile"; then
			say "$base: links to $target, itself a link"
			ok=0
		else
			parse_page "$tfile"
			if [[ " ${NAME_TEXT//,/ } " != *" $name "* ]]; then
				say "$base: the NAME section of $target does not list $name"
				ok=0
			fi
		fi
		[ $ok = 1 ] && render_text "man$sec/$target"
	else
		if [[ $install_list != *"'$base'"* ]]; then
			say "$base: not installed by install_man in man/meson.build"
			ok=0
		fi
		warn=$(cd "$tmp/tree" && groff $(preproc "$p") -man -Tutf8 -ww -z "$rel" 2>&1)
		if [ -n "$warn" ]; then
			say "$base: groff -man -Tutf8 -ww -z reports:"
			printf '%s\n' "$warn" | sed 's/^/#   /' >&2
			ok=0
		fi
		parse_page "$p"
		if [[ $TH_LINE != ".TH $name $sec "* ]]; then
			say "$base: .TH does not name $name, section $sec"
			ok=0
		fi
		local heads="NAME DESCRIPTION SEE_ALSO"
		case $sec in
		1) heads="$heads SYNOPSIS" ;;
		3) heads="$heads SYNOPSIS RETURN_VALUE" ;;
		esac
		for h in $heads; do
			if [[ $'\n'$HEADS != *$'\n'"${h//_/ }"$'\n'* ]]; then
				say "$base: no ${h//_/ } section"
				ok=0
			fi
		done
		if [ "$sec" = 3 ] && [ $HAS_INCLUDE = 0 ]; then
			say "$base: SYNOPSIS does not include <faultline/faultline.h>"
			ok=0
		fi
		if [[ $NAME_TEXT != *'\-'* ]]; then
			say "$base: NAME is not \"name \\- description\""
			ok=0
		fi
		for ref in $(printf '%s\n' $REFS | sort -u); do
			if [ ! -f "$mandir/$ref" ]; then
				say "$base: refers to ${ref%.*}(${ref##*.}), which has no page"
				ok=0
			fi
		done
		render_text "$rel"
		mapfile -t wide <"$TEXT_FILE"
		for line in "${wide[@]}"; do
			if [ ${#line} -gt 80 ]; then
				say "$base: line wider than 80 columns (no-fill text does not wrap):"
				say "  $line"
				ok=0
			fi
		done
	fi

	# A function's page must show the header's prototype.
	if [ "$sec" = 3 ] && [ -n "${PROTO[$name]:-}" ]; then
		if [ $ok = 0 ] && [ -z "${TEXT_FILE:-}" ]; then
			:
		elif [[ $NORM_TEXT != *"${PROTO[$name]}"* ]]; then
			say "$base: SYNOPSIS lacks the header's prototype: ${PROTO[$name]}"
			ok=0
		fi
	fi

	# Section 3 pages are named after their function; the others carry
	# their section (faultline.1 and faultline.7 share a name).
	[ "$sec" = 3 ] || name=$base
	if [ $ok = 1 ]; then
		record PASS "$name"
	else
		record FAIL "$name"
	fi
}

# ---- every declared function has a page ---------------------------------
for fn in $(printf '%s\n' "${!PROTO[@]}" | sort); do
	if [ ! -f "$mandir/$fn.3" ]; then
		say "$fn is declared in include/faultline/ but man/$fn.3 does not exist"
		record FAIL "$fn"
	fi
done

# ---- every public constant is documented --------------------------------
#
# Each FL_* macro and enumerator of include/faultline/ (FL_API, the export
# macro, aside) is named by at least one page: a flag nobody documents is
# one nobody can use (FL_REGION_MEMFD and FL_RELEASE_DRAIN were).
all_text=$(cat "${pages[@]}")
undocumented=0
for c in $( (sed -n 's/^#define \(FL_[A-Z0-9_]*\).*/\1/p' "$incdir"/*.h "$incdir"/*.h.in
	sed -n 's/^[[:space:]]*\(FL_[A-Z0-9_]*\)[[:space:]]*[=,].*/\1/p' "$incdir"/*.h) | sort -u); do
	[ "$c" = FL_API ] && continue
	if ! [[ $all_text =~ (^|[^A-Za-z0-9_])$c([^A-Za-z0-9_]|$) ]]; then
		say "$c is defined in include/faultline/ but no page in man/ names it"
		undocumented=1
	fi
done
if [ $undocumented = 0 ]; then
	record PASS constants
else
	record FAIL constants
fi

# ---- every page is well formed ------------------------------------------
if [ ${#pages[@]} -eq 0 ]; then
	say "no pages in $mandir"
	record FAIL pages
fi
for p in "${pages[@]}"; do
	TEXT_FILE= NORM_TEXT=
	check_page "$p"
done

printf '# man: %d passed, %d failed\n' "$passed" "$failed" >&2
[ "$failed" -eq 0 ]
