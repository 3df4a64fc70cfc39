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

/* One line of /proc/self/maps: "lo-hi perms offset dev inode [path]". */
struct maps_line {
	char perms[8];
	unsigned long ino;
	char path[64];
};

/*
 * Does every page of [addr, addr + len) lie in mappings, with no gap, for
 * which ok() holds? (false when /proc cannot be read)
 */
static bool maps_cover(uint64_t addr, uint64_t len, bool (*ok)(const struct maps_line *l, const void *ctx),
		       const void *ctx)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t cur = addr, end = addr + len;

	if (!f)
		return false;
	while (cur < end && fgets(line, sizeof(line), f)) {
		struct maps_line l = { .path = "" };
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %63s", &lo, &hi, l.perms, &l.ino, l.path) < 4 ||
		    strlen(l.perms) != 4)
			break;
		if (hi <= cur)
			continue;
		if (lo > cur || !ok(&l, ctx))
			break;
		cur = hi;
	}
	fclose(f);
	return cur >= end;
}

/* Private ('p'), no inode, and no path but a bracketed one ([heap],
 * [stack], [anon:...]). */
static bool private_anon(const struct maps_line *l, const void *ctx)
{
	(void)ctx;
	return l->perms[3] == 'p' && !l->ino && (!l->path[0] || l->path[0] == '[');
}

bool fl__range_private_anon(uint64_t addr, uint64_t len)
{
	return maps_cover(addr, len, private_anon, NULL);
}

static bool has_prot(const struct maps_line *l, const void *ctx)
{
	int want = *(const int *)ctx;
	int p = (l->perms[0] == 'r' ? PROT_READ : 0) | (l->perms[1] == 'w' ? PROT_WRITE : 0) |
		(l->perms[2] == 'x' ? PROT_EXEC : 0);

	return (p & want) == want;
}

bool fl__range_has_prot(uint64_t addr, uint64_t len, int prot)
{
	return maps_cover(addr, len, has_prot, &prot);
}
