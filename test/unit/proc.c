// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * lib/util/proc.c's readers of /proc/self/maps: whether a range is mapped
 * throughout with a protection (fl_watch_prepare_write's check where the
 * kernel has no PROCMAP_QUERY, i.e. before Linux 6.11) and whether it is
 * private anonymous memory (what a reset point saves sparsely).
 */
#include "harness.h"
#include "flutil.h"

#include <sys/mman.h>
#include <unistd.h>

#define P 4096ul

static int test_has_prot(void *arg)
{
	(void)arg;
	uint8_t *m = mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t a = (uintptr_t)m;

	T_ASSERT(m != MAP_FAILED);
	T_ASSERT(fl__range_has_prot(a, 4 * P, PROT_READ | PROT_WRITE));
	/* A read-only page in the middle (its own VMA): writable no more
	 * over the whole range, still readable; each side on its own. */
	T_ASSERT(mprotect(m + P, P, PROT_READ) == 0);
	T_ASSERT(!fl__range_has_prot(a, 4 * P, PROT_WRITE));
	T_ASSERT(fl__range_has_prot(a, 4 * P, PROT_READ));
	T_ASSERT(fl__range_has_prot(a, P, PROT_WRITE));
	T_ASSERT(fl__range_has_prot(a + 2 * P, 2 * P, PROT_WRITE));
	T_ASSERT(mprotect(m + 3 * P, P, PROT_NONE) == 0);
	T_ASSERT(!fl__range_has_prot(a + 2 * P, 2 * P, PROT_READ));
	T_ASSERT(fl__range_has_prot(a + 3 * P, P, 0));
	/* A hole is never covered, whatever is asked. */
	T_ASSERT(munmap(m + 2 * P, P) == 0);
	T_ASSERT(!fl__range_has_prot(a, 4 * P, 0));
	T_ASSERT(fl__range_has_prot(a, 2 * P, PROT_READ));
	munmap(m, 4 * P);
	return T_PASS;
}

static int test_private_anon(void *arg)
{
	(void)arg;
	uint8_t *m = mmap(NULL, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *s = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t a = (uintptr_t)m;

	T_ASSERT(m != MAP_FAILED && s != MAP_FAILED);
	T_ASSERT(fl__range_private_anon(a, 3 * P));
	/* Protection does not matter; a hole and shared memory do. */
	T_ASSERT(mprotect(m + P, P, PROT_READ) == 0);
	T_ASSERT(fl__range_private_anon(a, 3 * P));
	T_ASSERT(!fl__range_private_anon((uintptr_t)s, P));
	T_ASSERT(munmap(m + 2 * P, P) == 0);
	T_ASSERT(!fl__range_private_anon(a, 3 * P));
	T_ASSERT(fl__range_private_anon(a, 2 * P));
	munmap(m, 2 * P);
	munmap(s, P);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "has-prot", test_has_prot, NULL, 30 },
	{ "private-anon", test_private_anon, NULL, 30 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, FL_ARRAY_SIZE(cases));
}
