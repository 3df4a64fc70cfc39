// SPDX-License-Identifier: LGPL-2.1-or-later
/* Reading /proc: what the benchmarks, faultlined's tests and the test
 * harness measure memory with, written once. */
#include "flutil.h"

#include <stdio.h>

int fl__pss_kib(pid_t pid, uint64_t start, uint64_t len, const char *name, uint64_t *ret_kib)
{
	char path[64], line[512];
	unsigned long long kib, total = 0;
	bool in = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;
		/* A mapping's header line: "lo-hi perms ..." (its '-' comes
		 * before the first space; field lines have none there). */
		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (lo < start + len && hi > start) || (name && strstr(line, name));
			continue;
		}
		if (in && sscanf(line, "Pss: %llu kB", &kib) == 1)
			total += kib;
	}
	fclose(f);
	*ret_kib = total;
	return 0;
}
