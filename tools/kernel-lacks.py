#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# faultline check --json | kernel-lacks.py
#
# One line naming the features the running kernel lacks (their cases skip
# in every pass of tools/check.sh), for check.sh's summary: the kernel's
# own answer, the "kernel" field of each feature, whatever
# FAULTLINE_MASK_FEATURES hides. A file of its own so that test/cli/cli.sh
# can feed it fixed documents.
import json
import sys

try:
    d = json.load(sys.stdin)
    lacks = [f["name"] for f in d["features"] if not f["kernel"]]
    kernel = d["kernel"]
except (ValueError, KeyError, TypeError):
    print("kernel ?: features not probed (faultline check --json failed)")
    sys.exit(0)
if lacks:
    print("kernel %s: lacks %s (their cases skip)" % (kernel, ",".join(lacks)))
else:
    print("kernel %s: has every feature faultline knows (%d)" % (kernel, len(d["features"])))
