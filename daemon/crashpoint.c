// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Named crash points, for the tests of recovery (CRIU's fault-injection
 * idea): FAULTLINED_CRASH_AT=NAME makes the daemon kill itself with SIGKILL
 * when it reaches the point NAME — exactly where a real crash would hurt
 * most — so that a test can check that a restarted daemon covers that
 * moment, every time, instead of hoping a random kill lands there.
 * Documented in faultlined(8) as a testing aid.
 */
#include "faultlined.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fld_crash_point(const char *name)
{
	const char *at = getenv("FAULTLINED_CRASH_AT");

	if (!at || strcmp(at, name))
		return;
	fld_log(0, "crash point %s: killing myself (FAULTLINED_CRASH_AT)", name);
	kill(getpid(), SIGKILL);
	pause();
}
