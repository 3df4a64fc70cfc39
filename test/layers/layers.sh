#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The layering rule of lib/ (HACKING.md), shown to hold and to bite:
#   tree-ok          tools/check-layers.sh passes on lib/ as it is
#   upward-include   a kernel-layer file that includes an engine header by
#                    bare name does not compile with the kernel layer's
#                    include path (the compiler's half of the rule)
#   dotdot-refused   the same include as "../engine/engine-internal.h" (which
#                    would compile) is refused by check-layers.sh
#   layer-path-refused  "engine/engine-internal.h" through another layer's
#                    folder is refused too
#   incdirs-refused  a layer whose include_directories name a layer its
#                    "May include" line does not is refused
# Usage: layers.sh SOURCE_ROOT BUILD_ROOT (for the generated <faultline/version.h>)
set -u
src=$1 build=$2
T=$(mktemp -d /tmp/fl-layers-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/../harness/harness.sh"
T_PROG=layers
check() { # name, want (0 ok, 1 refused), command...
	local name=$1 want=$2 rc
	shift 2
	"$@" > "$T/out" 2>&1
	rc=$?
	if { [ "$want" = 0 ] && [ "$rc" = 0 ]; } || { [ "$want" = 1 ] && [ "$rc" != 0 ]; }; then
		result PASS "$name"
	else
		echo "# $name: exit $rc, wanted $([ "$want" = 0 ] && echo success || echo a refusal):" >&2
		sed 's/^/#   /' "$T/out" >&2
		result FAIL "$name"
	fi
}

check tree-ok 0 "$src/tools/check-layers.sh" "$src/lib"

# The compiler's half: the kernel layer sees include/, lib/kernel, lib/util.
printf '#include "kernel.h"\n#include "engine-internal.h"\n' > "$T/up.c"
check upward-include 1 "${CC:-cc}" -fsyntax-only -D_GNU_SOURCE -I "$src/include" -I "$build/include" \
	-I "$src/lib/kernel" -I "$src/lib/util" -I "$build/lib/util" -I "$T" "$T/up.c"
if grep -q "engine-internal.h: No such file" "$T/out" && [ "$(grep -c "error" "$T/out")" = 1 ]; then
	result PASS upward-include-only-error
else
	echo "# upward-include: not refused for the upward include alone:" >&2
	sed 's/^/#   /' "$T/out" >&2
	result FAIL upward-include-only-error
fi

# The script's half, on copies of lib/.
mklib() { rm -rf "$T/lib"; cp -r "$src/lib" "$T/lib"; }
mklib
printf '#include "../engine/engine-internal.h"\n' >> "$T/lib/kernel/uffd.c"
check dotdot-refused 1 "$src/tools/check-layers.sh" "$T/lib"
mklib
printf '#include "engine/engine-internal.h"\n' >> "$T/lib/store/store.c"
check layer-path-refused 1 "$src/tools/check-layers.sh" "$T/lib"
mklib
sed -i 's/include_directories : \[inc, kernel_inc, util_inc\]/include_directories : [inc, kernel_inc, util_inc, engine_inc]/' \
	"$T/lib/kernel/meson.build"
grep -q engine_inc "$T/lib/kernel/meson.build" || { echo "# incdirs-refused: the edit did not apply" >&2; result FAIL incdirs-edit; }
check incdirs-refused 1 "$src/tools/check-layers.sh" "$T/lib"

summary
