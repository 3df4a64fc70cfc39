// SPDX-License-Identifier: LGPL-2.1-or-later
/* The library never prints: messages go to the caller's callback, or nowhere. */
#include "flutil.h"

#include <stdio.h>

const char *fl_version(void)
{
	return "0.1.0";
}

void fl__log(const struct fl__logger *lg, enum fl_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!lg || !lg->fn || level > lg->level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	lg->fn(level, buf, lg->ctx);
}
