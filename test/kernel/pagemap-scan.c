// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * PAGEMAP_SCAN through fl_pagemap_scan() / fl_pagemap_scan_all(): written
 * and present pages of a WP_ASYNC-watched anonymous range, get-and-reset
 * with FL_SCAN_WP_MATCHING, max_pages (bounds what is reported AND what is
 * re-protected), continuation on walk_end, scanning another process, and
 * the errors.
 *
 * THP would make a whole 2 MiB report as written after one write; t_map()
 * maps anonymous memory with MADV_NOHUGEPAGE, and every range here is
 * small.
 */
#include "kt.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPAGES 16
#define WATCH_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

struct watch {
	size_t page;
	char *area;
	size_t len;
	int uffd, pm;
};

/* A WP_ASYNC + WP_UNPOPULATED watched anonymous range, all protected. */
static void watch_setup(struct watch *w, unsigned npages)
{
	t_require(fl_features_from_uffd(WATCH_FEATURES) | FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	w->page = t_page_size(FL_MEM_ANON);
	w->len = npages * w->page;
	w->uffd = t_uffd(WATCH_FEATURES);
	w->area = t_map(FL_MEM_ANON, w->len, NULL);
	T_OK(fl_uffd_register(w->uffd, w->area, w->len, FL_REG_WP, NULL));
	T_OK(fl_uffd_writeprotect(w->uffd, w->area, w->len, FL_WP_PROTECT));
	T_OK(fl_pagemap_open(0, &w->pm));
}

static struct fl_scan_opts written_opts(const struct watch *w, uint64_t flags)
{
	return (struct fl_scan_opts){
		.sz = sizeof(struct fl_scan_opts),
		.start = (uintptr_t)w->area,
		.end = (uintptr_t)w->area + w->len,
		.flags = flags,
		.category_mask = FL_PAGE_IS_WRITTEN,
		.return_mask = FL_PAGE_IS_WRITTEN,
	};
}

/* Page-index bitmap of what a scan reported. */
static uint64_t regions_to_bits(const struct watch *w, const struct fl_page_region *vec, int n)
{
	uint64_t bits = 0;

	for (int i = 0; i < n; i++) {
		T_ASSERT(vec[i].start < vec[i].end, "empty region %d", i);
		T_ASSERT(vec[i].start >= (uintptr_t)w->area &&
			 vec[i].end <= (uintptr_t)w->area + w->len, "region %d out of range", i);
		for (uint64_t a = vec[i].start; a < vec[i].end; a += w->page) {
			unsigned idx = (unsigned)((a - (uintptr_t)w->area) / w->page);
			T_ASSERT(!(bits & (1ULL << idx)), "page %u reported twice", idx);
			bits |= 1ULL << idx;
		}
	}
	return bits;
}

static void write_pages(const struct watch *w, uint64_t bits)
{
	for (unsigned i = 0; i < 64; i++)
		if (bits & (1ULL << i))
			w->area[i * w->page + 1] = (char)i;
}

static uint64_t scan_written(const struct watch *w, uint64_t flags, uint64_t max_pages,
			     uint64_t *ret_walk_end)
{
	struct fl_page_region vec[NPAGES];
	struct fl_scan_opts o = written_opts(w, flags);
	int n;

	o.max_pages = max_pages;
	n = fl_pagemap_scan(w->pm, &o, vec, NPAGES, ret_walk_end);
	T_ASSERT(n >= 0, "fl_pagemap_scan: %d (%s)", n, strerror(-n));
	for (int i = 0; i < n; i++)
		T_ASSERT_EQ(vec[i].categories, FL_PAGE_IS_WRITTEN);
	return regions_to_bits(w, vec, n);
}

/* ---- get --------------------------------------------------------------- */

static int test_written(void *arg)
{
	struct watch w;
	const uint64_t written = (1u << 1) | (1u << 4) | (1u << 5) | (1u << 9) | (1u << 15);
	uint64_t walk_end = 0;

	watch_setup(&w, NPAGES);
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), 0);
	write_pages(&w, written);
	/* WP_ASYNC resolved those writes in the kernel: no messages. */
	T_ASSERT_EQ(kt_uffd_pending(w.uffd), 0);
	T_ASSERT_EQ(scan_written(&w, 0, 0, &walk_end), written);
	T_ASSERT_EQ(walk_end, (uintptr_t)w.area + w.len);
	/* A plain get does not reset. */
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), written);
	/* Adjacent pages come back as one region. */
	{
		struct fl_page_region vec[NPAGES];
		struct fl_scan_opts o = written_opts(&w, 0);
		int n = fl_pagemap_scan(w.pm, &o, vec, NPAGES, NULL);
		T_ASSERT_EQ(n, 4);
		T_ASSERT_EQ(vec[1].start, (uintptr_t)w.area + 4 * w.page);
		T_ASSERT_EQ(vec[1].end, (uintptr_t)w.area + 6 * w.page);
	}
	return T_PASS;
}

/* PRESENT and WRITTEN are separate: a read maps a page without writing it. */
static int test_present_written(void *arg)
{
	struct watch w;
	struct fl_page_region vec[NPAGES];
	struct fl_scan_opts o;
	int n;

	watch_setup(&w, 8);
	(void)*(volatile char *)(w.area + 2 * w.page);	/* read */
	w.area[3 * w.page] = 1;				/* write */
	o = written_opts(&w, 0);
	o.category_mask = 0;
	o.category_anyof_mask = FL_PAGE_IS_PRESENT | FL_PAGE_IS_WRITTEN;
	o.return_mask = FL_PAGE_IS_PRESENT | FL_PAGE_IS_WRITTEN;
	n = fl_pagemap_scan(w.pm, &o, vec, NPAGES, NULL);
	T_ASSERT_EQ(n, 2);
	T_ASSERT_EQ(vec[0].start, (uintptr_t)w.area + 2 * w.page);
	T_ASSERT_EQ(vec[0].end, (uintptr_t)w.area + 3 * w.page);
	T_ASSERT_EQ(vec[0].categories, FL_PAGE_IS_PRESENT);
	T_ASSERT_EQ(vec[1].start, (uintptr_t)w.area + 3 * w.page);
	T_ASSERT_EQ(vec[1].end, (uintptr_t)w.area + 4 * w.page);
	T_ASSERT_EQ(vec[1].categories, FL_PAGE_IS_PRESENT | FL_PAGE_IS_WRITTEN);
	/* Inverted: the pages NOT written, i.e. everything else. */
	o.category_anyof_mask = 0;
	o.category_inverted = FL_PAGE_IS_WRITTEN;
	o.category_mask = FL_PAGE_IS_WRITTEN;
	o.return_mask = FL_PAGE_IS_WRITTEN;
	n = fl_pagemap_scan(w.pm, &o, vec, NPAGES, NULL);
	T_ASSERT_EQ(n, 2);
	T_ASSERT_EQ(vec[0].start, (uintptr_t)w.area);
	T_ASSERT_EQ(vec[0].end, (uintptr_t)w.area + 3 * w.page);
	T_ASSERT_EQ(vec[1].start, (uintptr_t)w.area + 4 * w.page);
	T_ASSERT_EQ(vec[1].end, (uintptr_t)w.area + 8 * w.page);
	T_ASSERT_EQ(vec[0].categories, 0);
	return T_PASS;
}

/* PRESENT needs no uffd at all. */
static int test_present(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct fl_page_region vec[8];
	char *area;
	int pm, n;
	struct fl_scan_opts o = { .sz = sizeof(o) };

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	area = t_map(FL_MEM_ANON, 8 * page, NULL);
	area[2 * page] = 1;
	area[3 * page] = 1;
	area[6 * page] = 1;
	T_OK(fl_pagemap_open(0, &pm));
	o.start = (uintptr_t)area;
	o.end = (uintptr_t)area + 8 * page;
	o.category_mask = FL_PAGE_IS_PRESENT;
	o.return_mask = FL_PAGE_IS_PRESENT;
	n = fl_pagemap_scan(pm, &o, vec, 8, NULL);
	T_ASSERT_EQ(n, 2);
	T_ASSERT_EQ(vec[0].start, (uintptr_t)area + 2 * page);
	T_ASSERT_EQ(vec[0].end, (uintptr_t)area + 4 * page);
	T_ASSERT_EQ(vec[1].start, (uintptr_t)area + 6 * page);
	T_ASSERT_EQ(vec[1].end, (uintptr_t)area + 7 * page);
	T_ASSERT_EQ(vec[0].categories, FL_PAGE_IS_PRESENT);
	return T_PASS;
}

/* ---- get and reset ----------------------------------------------------- */

static int test_get_and_reset(void *arg)
{
	struct watch w;
	const uint64_t written = (1u << 0) | (1u << 7) | (1u << 8) | (1u << 12);

	watch_setup(&w, NPAGES);
	write_pages(&w, written);
	T_ASSERT_EQ(scan_written(&w, FL_SCAN_WP_MATCHING | FL_SCAN_CHECK_WPASYNC, 0, NULL),
		    written);
	/* Re-protected: nothing until the next writes. */
	T_ASSERT_EQ(scan_written(&w, FL_SCAN_WP_MATCHING, 0, NULL), 0);
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), 0);
	write_pages(&w, 1u << 7);
	write_pages(&w, 1u << 3);
	T_ASSERT_EQ(scan_written(&w, FL_SCAN_WP_MATCHING, 0, NULL), (1u << 3) | (1u << 7));
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), 0);
	/* The data written stays; only the tracking was reset. */
	T_ASSERT_EQ(w.area[7 * w.page + 1], 7);
	T_ASSERT_EQ(w.area[12 * w.page + 1], 12);
	T_ASSERT_EQ(kt_uffd_pending(w.uffd), 0);
	return T_PASS;
}

/* max_pages bounds what is reported and what is re-protected: the rest is
 * still written and reported by the next scan. */
static int test_max_pages(void *arg)
{
	struct watch w;
	const uint64_t written = (1u << 1) | (1u << 2) | (1u << 3) | (1u << 8) | (1u << 10) |
				 (1u << 11);
	uint64_t walk_end = 0, first;

	watch_setup(&w, NPAGES);
	write_pages(&w, written);
	first = scan_written(&w, FL_SCAN_WP_MATCHING, 4, &walk_end);
	T_ASSERT_EQ(first, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 8));
	T_ASSERT(walk_end > (uintptr_t)w.area + 8 * w.page &&
		 walk_end <= (uintptr_t)w.area + 10 * w.page,
		 "walk_end at page %lld", (long long)((walk_end - (uintptr_t)w.area) / w.page));
	/* Only those four were re-protected. */
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), (1u << 10) | (1u << 11));
	T_ASSERT_EQ(scan_written(&w, FL_SCAN_WP_MATCHING, 1, NULL), 1u << 10);
	T_ASSERT_EQ(scan_written(&w, FL_SCAN_WP_MATCHING, 0, NULL), 1u << 11);
	T_ASSERT_EQ(scan_written(&w, 0, 0, NULL), 0);
	return T_PASS;
}

/* A full vec stops the walk; walk_end says where to go on. */
static int test_walk_end(void *arg)
{
	struct watch w;
	const uint64_t written = (1u << 1) | (1u << 4) | (1u << 9) | (1u << 14);
	struct fl_page_region vec[1];
	struct fl_scan_opts o;
	uint64_t bits = 0, walk_end;
	int calls = 0;

	watch_setup(&w, NPAGES);
	write_pages(&w, written);
	o = written_opts(&w, 0);
	while (o.start < o.end) {
		int n;
		walk_end = 0;
		n = fl_pagemap_scan(w.pm, &o, vec, 1, &walk_end);
		T_ASSERT(n == 0 || n == 1, "n = %d", n);
		T_ASSERT(walk_end > o.start && walk_end <= o.end, "walk_end did not advance");
		if (n)
			T_ASSERT(walk_end >= vec[0].end);
		bits |= regions_to_bits(&w, vec, n);
		o.start = walk_end;
		T_ASSERT(++calls <= 8, "walk does not end");
	}
	T_ASSERT_EQ(bits, written);
	T_ASSERT(calls >= 4, "one region per call, got all in %d calls", calls);
	return T_PASS;
}

/* ---- fl_pagemap_scan_all ----------------------------------------------- */

struct collect {
	uint64_t first_start;
	size_t regions;
	int64_t pages;
	int stop_after;
	const struct watch *w;
};

static int collect_fn(const struct fl_page_region *r, void *ctx)
{
	struct collect *c = ctx;

	if (!c->regions)
		c->first_start = r->start;
	c->regions++;
	c->pages += (int64_t)((r->end - r->start) / c->w->page);
	if (c->stop_after && (int)c->regions >= c->stop_after)
		return -ECANCELED;
	return 0;
}

static int test_scan_all(void *arg)
{
	/* More separate regions than fl_pagemap_scan_all's vec holds (256),
	 * so it must follow walk_end. */
	enum { PAGES = 1200 };
	struct watch w;
	struct fl_scan_opts o;
	struct collect c = { 0 };
	int64_t total;

	watch_setup(&w, PAGES);
	for (unsigned i = 0; i < PAGES; i += 2)
		w.area[i * w.page] = 1;
	c.w = &w;
	o = written_opts(&w, 0);
	total = fl_pagemap_scan_all(w.pm, &o, collect_fn, &c);
	T_ASSERT_EQ(total, PAGES / 2);
	T_ASSERT_EQ(c.regions, PAGES / 2);
	T_ASSERT_EQ(c.pages, PAGES / 2);
	T_ASSERT_EQ(c.first_start, (uintptr_t)w.area);

	/* max_pages bounds the whole walk, with reset. */
	memset(&c, 0, sizeof(c));
	c.w = &w;
	o = written_opts(&w, FL_SCAN_WP_MATCHING);
	o.max_pages = 300;
	total = fl_pagemap_scan_all(w.pm, &o, collect_fn, &c);
	T_ASSERT_EQ(total, 300);
	T_ASSERT_EQ(c.pages, 300);
	memset(&c, 0, sizeof(c));
	c.w = &w;
	o = written_opts(&w, 0);
	T_ASSERT_EQ(fl_pagemap_scan_all(w.pm, &o, collect_fn, &c), PAGES / 2 - 300);
	T_ASSERT_EQ(c.first_start, (uintptr_t)w.area + 600 * w.page);

	/* A callback error stops the walk and is returned. */
	memset(&c, 0, sizeof(c));
	c.w = &w;
	c.stop_after = 3;
	T_ASSERT_EQ(fl_pagemap_scan_all(w.pm, &o, collect_fn, &c), -ECANCELED);
	T_ASSERT_EQ(c.regions, 3);
	return T_PASS;
}

/* ---- another process ---------------------------------------------------- */

static int test_other_process(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct fl_page_region vec[8];
	struct fl_scan_opts o = { .sz = sizeof(o) };
	char *area;
	int pm, n, ready[2], done[2], status;
	pid_t pid;
	char c;

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	area = t_map(FL_MEM_ANON, 8 * page, NULL);
	T_ASSERT(pipe(ready) == 0 && pipe(done) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		area[0] = 1;
		area[5 * page] = 1;
		(void)!write(ready[1], "r", 1);
		(void)!read(done[0], &c, 1);
		_exit(0);
	}
	T_ASSERT(read(ready[0], &c, 1) == 1);
	T_OK(fl_pagemap_open(pid, &pm));
	o.start = (uintptr_t)area;
	o.end = (uintptr_t)area + 8 * page;
	o.category_mask = FL_PAGE_IS_PRESENT;
	o.return_mask = FL_PAGE_IS_PRESENT;
	n = fl_pagemap_scan(pm, &o, vec, 8, NULL);
	T_ASSERT_EQ(n, 2);
	T_ASSERT_EQ(vec[0].start, (uintptr_t)area);
	T_ASSERT_EQ(vec[1].start, (uintptr_t)area + 5 * page);
	/* Ours: nothing present. */
	close(pm);
	T_OK(fl_pagemap_open(0, &pm));
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 8, NULL), 0);
	T_ASSERT(write(done[1], "d", 1) == 1);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	{
		int fd = -12345;
		T_ASSERT_EQ(fl_pagemap_open(pid, &fd), -ENOENT);	/* reaped */
		T_ASSERT_EQ(fd, -12345);
	}
	return T_PASS;
}

/* ---- errors ------------------------------------------------------------- */

static int test_errors(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct fl_page_region vec[4];
	struct fl_scan_opts o = { .sz = sizeof(o) }, good;
	char *area;
	int pm;

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	area = t_map(FL_MEM_ANON, 4 * page, NULL);
	area[0] = 1;
	T_OK(fl_pagemap_open(0, &pm));
	o.start = (uintptr_t)area;
	o.end = (uintptr_t)area + 4 * page;
	o.category_mask = FL_PAGE_IS_PRESENT;
	o.return_mask = FL_PAGE_IS_PRESENT;
	good = o;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &good, vec, 4, NULL), 1);

	/* Category bit 9 does not exist, in any of the masks. */
	o.return_mask |= 1ULL << 9;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	o = good;
	o.category_mask |= 1ULL << 9;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	o = good;
	o.category_anyof_mask = 1ULL << 9;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	o = good;
	o.category_inverted = 1ULL << 9;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	/* Unknown flag. */
	o = good;
	o.flags = 1ULL << 2;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	/* Unaligned start. */
	o = good;
	o.start += 1;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	/* No options size. */
	o = good;
	o.sz = 0;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EINVAL);
	T_ASSERT_EQ(fl_pagemap_scan(pm, NULL, vec, 4, NULL), -EINVAL);
	/* CHECK_WPASYNC on a range that is not WP_ASYNC-watched. */
	o = good;
	o.flags = FL_SCAN_CHECK_WPASYNC;
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EPERM);
	/* Not a pagemap fd. */
	T_ASSERT(fl_pagemap_scan(0, &good, vec, 4, NULL) < 0);
	T_ASSERT_EQ(fl_pagemap_scan(-1, &good, vec, 4, NULL), -EBADF);
	{
		struct collect c = { 0 };
		T_ASSERT_EQ(fl_pagemap_scan_all(pm, &good, NULL, &c), -EINVAL);
		o = good;
		o.return_mask |= 1ULL << 9;
		T_ASSERT_EQ(fl_pagemap_scan_all(pm, &o, collect_fn, &c), -EINVAL);
		T_ASSERT_EQ(c.regions, 0);
	}
	return T_PASS;
}

static int test_masked(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct fl_page_region vec[4];
	struct fl_scan_opts o = { .sz = sizeof(o) };
	struct collect c = { 0 };
	char *area;
	int pm;

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	area = t_map(FL_MEM_ANON, 4 * page, NULL);
	area[0] = 1;
	T_OK(fl_pagemap_open(0, &pm));
	o.start = (uintptr_t)area;
	o.end = (uintptr_t)area + 4 * page;
	o.category_mask = FL_PAGE_IS_PRESENT;
	o.return_mask = FL_PAGE_IS_PRESENT;
	setenv("FAULTLINE_MASK_FEATURES", "pagemap_scan", 1);
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), -EOPNOTSUPP);
	c.w = NULL;
	T_ASSERT_EQ(fl_pagemap_scan_all(pm, &o, collect_fn, &c), -EOPNOTSUPP);
	T_ASSERT_EQ(c.regions, 0);
	unsetenv("FAULTLINE_MASK_FEATURES");
	T_ASSERT_EQ(fl_pagemap_scan(pm, &o, vec, 4, NULL), 1);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "written", test_written, NULL, 0, T_WATCH_ASYNC },
	{ "present_written", test_present_written, NULL, 0, T_WATCH_ASYNC },
	{ "present", test_present, NULL, 0, T_PAGEMAP_SCAN },
	{ "get_and_reset", test_get_and_reset, NULL, 0, T_WATCH_ASYNC },
	{ "max_pages", test_max_pages, NULL, 0, T_WATCH_ASYNC },
	{ "walk_end", test_walk_end, NULL, 0, T_WATCH_ASYNC },
	{ "scan_all", test_scan_all, NULL, 0, T_WATCH_ASYNC },
	{ "other_process", test_other_process, NULL, 0, T_PAGEMAP_SCAN },
	{ "errors", test_errors, NULL, 0, T_PAGEMAP_SCAN },
	{ "masked", test_masked, NULL, 0, T_PAGEMAP_SCAN },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
