// SPDX-License-Identifier: LGPL-2.1-or-later
/* Reading /proc: what the benchmarks, faultlined's tests and the test
 * harness measure memory with, written once. */
#include "flutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

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

bool fl__range_private_anon(uint64_t addr, uint64_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t cur = addr, end = addr + len;

	if (!f)
		return false;
	/* "lo-hi perms offset dev inode [path]": private ('p'), no inode,
	 * and no path but a bracketed one ([heap], [stack], [anon:...]). */
	while (cur < end && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, ino;
		char perms[8], path[64] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %63s", &lo, &hi, perms, &ino, path) < 4)
			break;
		if (hi <= cur)
			continue;
		if (lo > cur || perms[3] != 'p' || ino || (path[0] && path[0] != '['))
			break;
		cur = hi;
	}
	fclose(f);
	return cur >= end;
}

bool fl__range_has_prot(uint64_t addr, uint64_t len, int prot)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t cur = addr, end = addr + len;

	if (!f)
		return false;
	while (cur < end && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];
		int p;

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || strlen(perms) < 3)
			break;
		if (hi <= cur)
			continue;
		p = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		    (perms[2] == 'x' ? PROT_EXEC : 0);
		if (lo > cur || (p & prot) != prot)
			break;
		cur = hi;
	}
	fclose(f);
	return cur >= end;
}
