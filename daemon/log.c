// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The daemon's log: one line per event on stderr (journald and a terminal
 * both take that), each line written with a single write(2) so the lines of
 * handler threads and the main loop never interleave.
 */
#include "faultlined.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fld_verbose;

void fld_log(int level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	va_list ap;
	int n, m;

	if (level > fld_verbose)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof(line), "faultlined[%d] %lld.%03ld ", (int)getpid(), (long long)ts.tv_sec,
		     ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = m < 0 ? n : (size_t)(n + m) >= sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		(void)0;
}

void fld_log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	/* The engine's INFO lines (every event) are ours at level 1. */
	fld_log(level <= FL_LOG_WARN ? 0 : (int)level - 1, "engine: %s", msg);
}
