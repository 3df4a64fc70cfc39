#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# testlog-verdicts.py TESTLOG_JSON PASS
#
# The outcomes of a meson testlog that the case lines ("PASS|FAIL|SKIP
# prog/case" in $FL_TEST_RESULTS) do not show, one line each: a test that
# crashed or timed out without a FAIL line fails as "PASS/meson:NAME"; one
# that passed or skipped without printing any case line counts as one case.
# Used by tools/check.sh and tools/vm-check.sh.
import json
import sys

path, pass_name = sys.argv[1], sys.argv[2]
try:
    lines = open(path).read().splitlines()
except OSError:
    sys.exit(0)
for line in lines:
    if not line.strip():
        continue
    t = json.loads(line)
    # "project:suite / name" -> "name"
    name, result = t.get("name", "?").split(" / ")[-1], t.get("result", "?")
    rc = t.get("returncode")
    out = (t.get("stdout") or "").splitlines()
    verdicts = [l.split(None, 1)[0] for l in out if l.split(None, 1)[:1] in (["PASS"], ["FAIL"], ["SKIP"])]
    label = f"{pass_name}/meson:{name}"
    if result in ("OK", "EXPECTEDFAIL"):
        if not verdicts:
            print(f"PASS {label}")
    elif result == "SKIP":
        if not verdicts:
            print(f"SKIP {label}")
    elif "FAIL" not in verdicts or result == "TIMEOUT" or rc not in (1, 77):
        # Also when FAIL lines were printed: a crash, a sanitizer abort or
        # a timeout of the program itself is not explained by them (and
        # the cases after it never ran).
        how = f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0 else f"exit {rc}"
        print(f"FAIL {label} ({result.lower()}, {how})")
