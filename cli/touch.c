// SPDX-License-Identifier: LGPL-2.1-or-later
#include "touch.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Only touch_pages() arms it, and only its own thread's reads fault there. */
static sigjmp_buf touch_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(touch_jmp, 1);
}

void touch_pages(const uint8_t *mem, uint64_t pages, size_t page_size, uint8_t *bad_map,
		 struct touch_result *res)
{
	struct sigaction sa, old;
	/* volatile: they live across siglongjmp() */
	volatile uint64_t i = 0, bad = 0, first_bad = 0, first_ns = 0;
	uint64_t t0 = fl__now_ns(), t;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	/* savemask 1: the handler's SIGBUS block is undone by the jump, so the
	 * next poisoned page is caught too. */
	if (sigsetjmp(touch_jmp, 1)) {
		if (!bad)
			first_bad = i;
		bad = bad + 1;
		if (bad_map)
			bad_map[i] = 1;
		if (i == 0)
			first_ns = fl__now_ns() - t0;
		i = i + 1;
	}
	for (; i < pages; i = i + 1) {
		t = fl__now_ns();
		(void)*(const volatile uint8_t *)(mem + i * page_size);
		if (i == 0)
			first_ns = fl__now_ns() - t;
	}
	res->ns = fl__now_ns() - t0;
	sigaction(SIGBUS, &old, NULL);
	res->pages = pages;
	res->bad = bad;
	res->first_bad = first_bad;
	res->first_access_ns = first_ns;
}

int write_atomically(const char *path, const uint8_t *mem, uint64_t len)
{
	struct atomic_file af;
	int r = atomic_file_open(&af, path);

	if (r)
		return r;
	return atomic_file_commit(&af, path, fl__pwrite_full(af.fd, mem, len, 0));
}

int64_t compare_pages(struct fl_image *ref, unsigned region, const uint8_t *mem, uint64_t pages,
		      const uint8_t *bad_map)
{
	uint8_t *buf = malloc(4096);
	int64_t mismatches = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t p = 0; p < pages; p++) {
		if (bad_map && bad_map[p])
			continue;	/* reported as bad already */
		if (fl_image_read(ref, region, p, 1, buf, NULL) || memcmp(buf, mem + p * 4096, 4096))
			mismatches++;
	}
	free(buf);
	return mismatches;
}
