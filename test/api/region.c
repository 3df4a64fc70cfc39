// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Lazy regions (include/faultline/region.h), as a table over memory types
 * (anon, shmem, hugetlb) and registration modes (MISSING, MINOR): memory and
 * file stores read by concurrent threads, zero stores and zero pages,
 * prefetch, background fill, EEXIST races, populate, store offsets, the
 * store's end, fixed addresses, statistics, freeing; then option validation.
 * Every case checks every byte it reads against the store's image.
 */
#include "util.h"

#define LEN (16 * U_MIB)

struct setup {
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *store;
	uint8_t *img;		/* region byte i must equal img[i] */
	uint8_t *base;
	size_t len, psz, npages;
};

/* An engine with `ethreads` handler threads and one region over a memory
 * store holding the pattern of `seed`. */
static void setup(struct setup *s, const struct u_cfg *c, size_t len, unsigned rflags, uint32_t seed,
		  unsigned ethreads)
{
	u_require_cfg(c, len);
	memset(s, 0, sizeof(*s));
	s->e = u_engine(0, ethreads);
	s->img = u_image(len, 0, seed);
	s->store = u_mem_store(s->img, len);
	s->r = u_region(s->e, c, len, s->store, rflags);
	s->base = fl_region_addr(s->r);
	s->len = fl_region_length(s->r);
	s->psz = fl_region_page_size(s->r);
	s->npages = s->len / s->psz;
	T_ASSERT(s->base != NULL);
	T_ASSERT_EQ(s->len, len);
	T_ASSERT_EQ(s->psz, u_cfg_psz(c));
}

static void teardown(struct setup *s)
{
	T_ASSERT(fl_region_free(s->r) == NULL);
	fl_store_unref(s->store);
	T_ASSERT(fl_engine_free(s->e) == NULL);
}

static void wait_resolved(struct fl_region *r, uint64_t want, unsigned timeout_ms)
{
	uint64_t t_end = t_deadline_ms(timeout_ms);
	while (fl_region_resolved_pages(r) < want && t_now_ns() < t_end)
		t_sleep_ms(2);
	T_ASSERT(fl_region_resolved_pages(r) == want, "resolved %llu of %llu pages after %u ms",
		 (unsigned long long)fl_region_resolved_pages(r), (unsigned long long)want,
		 t_scaled_ms(timeout_ms));
}

/* ---- stores read by four threads ------------------------------------------ */

static int c_mem_store(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;

	setup(&s, c, LEN, 0, 0x5101, 2);
	u_read_threads(s.base, s.img, s.psz, s.npages, 4, 2);
	U_CHECK(s.base, s.img, s.len, s.psz);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	T_ASSERT(u_faults(&st) > 0);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	T_ASSERT_EQ(st.store_errors, 0);
	teardown(&s);
	return T_PASS;
}

static int c_file_store(void *arg)
{
	const struct u_cfg *c = arg;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *store = NULL;
	struct fl_region_stats st;
	char path[64];
	uint8_t *img, *base;
	size_t psz = u_cfg_psz(c);
	int fd;

	u_require_cfg(c, LEN);
	e = u_engine(0, 2);
	img = u_image(LEN, 0, 0xf11e);
	fd = u_tmpfile(img, LEN, path, sizeof(path));
	close(fd);
	T_OK(fl_store_file_open(path, &store));
	unlink(path);
	T_ASSERT_EQ(fl_store_size(store), LEN);
	T_ASSERT(strcmp(fl_store_name(store), "file") == 0);
	r = u_region(e, c, LEN, store, 0);
	fl_store_unref(store);	/* the region holds its own reference */
	base = fl_region_addr(r);
	u_read_threads(base, img, psz, LEN / psz, 4, 2);
	U_CHECK(base, img, LEN, psz);
	st = u_rstats_settled(r);
	T_ASSERT_EQ(fl_region_resolved_pages(r), LEN / psz);
	T_ASSERT(st.bytes_read >= LEN, "bytes_read %llu", (unsigned long long)st.bytes_read);
	T_ASSERT_EQ(st.store_errors, 0);
	fl_region_free(r);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- zeros ------------------------------------------------------------------ */

static int c_zero_store(void *arg)
{
	const struct u_cfg *c = arg;
	size_t len = LEN / 2, psz = u_cfg_psz(c);
	struct fl_store *zs = NULL;
	struct fl_region *r[2];
	uint8_t *zeros;
	struct fl_engine *e;

	u_require_cfg(c, 2 * len);
	e = u_engine(0, 1);
	zeros = calloc(1, len);
	T_ASSERT(zeros);
	T_OK(fl_store_zero_new(len, &zs));
	T_ASSERT(strcmp(fl_store_name(zs), "zero") == 0);
	r[0] = u_region(e, c, len, NULL, 0);	/* no store: a zero store */
	r[1] = u_region(e, c, len, zs, 0);
	fl_store_unref(zs);
	for (int i = 0; i < 2; i++) {
		struct fl_region_stats st;
		U_CHECK(fl_region_addr(r[i]), zeros, len, psz);
		st = u_rstats_settled(r[i]);
		u_log_rstats(c->name, &st);
		T_ASSERT_EQ(fl_region_resolved_pages(r[i]), len / psz);
		T_ASSERT_EQ(st.pages_copy, 0);
		/* One reader, in order: every page resolved once, all from zeros. */
		T_ASSERT_EQ(st.pages_zero, len / psz);
		if (c->mode == FL_MODE_MINOR)
			T_ASSERT_EQ(st.pages_continue, len / psz);
		fl_region_free(r[i]);
	}
	fl_engine_free(e);
	return T_PASS;
}

/*
 * One page per fault (no prefetch): every page is counted exactly once, as
 * data or as zeros, however it was installed (a lone page of a memory store
 * is copied and looked at for zeros after the copy, resolve.c), and reads
 * back right.
 */
static int c_zero_pages_one_by_one(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;
	size_t nzero = 0;

	u_require_cfg(c, LEN);
	memset(&s, 0, sizeof(s));
	s.e = u_engine(0, 1);
	s.psz = u_cfg_psz(c);
	s.npages = LEN / s.psz;
	s.len = LEN;
	s.img = u_image(LEN, 0, 0x1b1e);
	for (size_t p = 0; p < s.npages; p++) {
		if (p % 3 == 1) {
			memset(s.img + p * s.psz, 0, s.psz);
			nzero++;
		}
	}
	s.store = u_mem_store(s.img, LEN);
	s.r = u_region(s.e, c, LEN, s.store, FL_REGION_NO_PREFETCH);
	s.base = fl_region_addr(s.r);
	U_CHECK(s.base, s.img, LEN, s.psz);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	T_ASSERT_EQ(st.pages_prefetch, 0);
	T_ASSERT_EQ(st.pages_zero, nzero);
	T_ASSERT_EQ(st.pages_copy, s.npages - nzero);
	T_ASSERT_EQ(st.bytes_read, LEN);
	teardown(&s);
	return T_PASS;
}

/* Store pages that are all zeros are mapped with ZEROPAGE, the rest copied. */
static int c_zero_pages(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;
	size_t nzero = 0;

	u_require_cfg(c, LEN);
	memset(&s, 0, sizeof(s));
	s.e = u_engine(0, 1);
	s.psz = u_cfg_psz(c);
	s.npages = LEN / s.psz;
	s.len = LEN;
	s.img = u_image(LEN, 0, 0x2e20);
	for (size_t p = 0; p < s.npages; p++) {
		/* scattered zero pages, and one long run (ZEROPAGE'd: short
		 * runs inside data are copied, see region.h) */
		if (p % 4 == 1 || p % 7 == 3 || (p >= s.npages / 4 && p < s.npages / 4 + 128)) {
			memset(s.img + p * s.psz, 0, s.psz);
			nzero++;
		}
	}
	s.store = u_mem_store(s.img, LEN);
	s.r = u_region(s.e, c, LEN, s.store, 0);
	s.base = fl_region_addr(s.r);
	U_CHECK(s.base, s.img, LEN, s.psz);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	T_ASSERT(st.pages_zero > 0);
	T_ASSERT(st.pages_zero <= nzero, "%llu zero pages of %zu", (unsigned long long)st.pages_zero, nzero);
	if (s.psz == 4096)
		T_ASSERT(st.pages_zero >= 64, "long zero run: only %llu ZEROPAGE'd", (unsigned long long)st.pages_zero);
	T_ASSERT_EQ(st.pages_copy + st.pages_zero, s.npages);
	if (c->mode == FL_MODE_MINOR)
		T_ASSERT_EQ(st.pages_continue, s.npages);
	teardown(&s);
	return T_PASS;
}

/* ---- prefetch ---------------------------------------------------------------- */

static int c_prefetch_seq(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;
	uint64_t faults;

	setup(&s, c, LEN, 0, 0x9e9, 1);
	U_CHECK(s.base, s.img, s.len, s.psz);	/* one reader, in order */
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	faults = u_faults(&st);
	T_ASSERT(st.pages_prefetch > 0);
	T_ASSERT(faults * 8 < s.npages, "%llu faults for %zu pages", (unsigned long long)faults, s.npages);
	/* Each fault resolves its page plus the window behind it, once. */
	T_ASSERT_EQ(st.pages_prefetch + faults, s.npages);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	teardown(&s);
	return T_PASS;
}

static int c_no_prefetch(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;

	setup(&s, c, LEN, FL_REGION_NO_PREFETCH, 0x9e0, 1);
	U_CHECK(s.base, s.img, s.len, s.psz);
	st = u_rstats_settled(s.r);
	T_ASSERT_EQ(u_faults(&st), s.npages);
	T_ASSERT_EQ(st.pages_prefetch, 0);
	T_ASSERT_EQ(st.lat_count, s.npages);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	teardown(&s);
	return T_PASS;
}

/* Random access keeps the window small; sequential access grows it. */
static int c_prefetch_random(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region *seq;
	struct fl_region_stats st_r, st_s;
	uint32_t *perm;
	double avg_r, avg_s;

	/* The 4 KiB window: a huge fill takes a whole 2 MiB chunk whatever
	 * the access pattern (test/api/hugefill.c). */
	setup(&s, c, LEN, FL_REGION_NO_HUGE_FILL, 0x7a9d, 1);
	seq = u_region(s.e, c, LEN, s.store, FL_REGION_NO_HUGE_FILL);
	perm = u_perm(s.npages, U_RANDOM, 1234);
	for (size_t i = 0; i < s.npages; i++) {
		size_t off = (size_t)perm[i] * s.psz;
		T_ASSERT(memcmp(s.base + off, s.img + off, s.psz) == 0, "page %u", perm[i]);
	}
	U_CHECK(fl_region_addr(seq), s.img, LEN, s.psz);
	st_r = u_rstats_settled(s.r);
	st_s = u_rstats_settled(seq);
	u_log_rstats("random", &st_r);
	u_log_rstats("sequential", &st_s);
	avg_r = (double)st_r.pages_prefetch / (double)u_faults(&st_r);
	avg_s = (double)st_s.pages_prefetch / (double)u_faults(&st_s);
	t_log("prefetched pages per fault: random %.2f, sequential %.2f", avg_r, avg_s);
	T_ASSERT(u_faults(&st_r) > s.npages / 2, "random: %llu faults for %zu pages",
		 (unsigned long long)u_faults(&st_r), s.npages);
	T_ASSERT(avg_r * 4 < avg_s);
	T_ASSERT(avg_r < 2.0);
	fl_region_free(seq);
	free(perm);
	teardown(&s);
	return T_PASS;
}

/* ---- background fill ----------------------------------------------------------- */

static int c_background(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;

	setup(&s, c, LEN, FL_REGION_BACKGROUND, 0xb6, 1);
	wait_resolved(s.r, s.npages, 20000);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	T_ASSERT_EQ(st.pages_background, s.npages);
	T_ASSERT_EQ(u_faults(&st), 0);
	U_CHECK(s.base, s.img, s.len, s.psz);
	st = u_rstats_settled(s.r);
	T_ASSERT_EQ(u_faults(&st), 0);	/* everything was already mapped */
	teardown(&s);
	return T_PASS;
}

/* The filler and four demand threads race for the same pages (EEXIST). */
static int c_exist_race(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;
	struct fl_region_opts o;
	uint64_t delay = 20;

	u_require_cfg(c, LEN);
	memset(&s, 0, sizeof(s));
	s.e = u_engine(0, 2);
	s.img = u_image(LEN, 0, 0xe7);
	s.store = u_mem_store(s.img, LEN);
	T_OK(fl_store_ctl(s.store, FL_STORE_CTL_DELAY_US, &delay));
	o = u_ropts(c, LEN, s.store, FL_REGION_BACKGROUND);
	o.fill_batch = 16;
	o.prefetch_max = 16;
	s.r = u_region_opts(s.e, &o);
	s.base = fl_region_addr(s.r);
	s.psz = fl_region_page_size(s.r);
	s.npages = LEN / s.psz;
	s.len = LEN;
	u_read_threads(s.base, s.img, s.psz, s.npages, 4, 3);
	wait_resolved(s.r, s.npages, 20000);
	U_CHECK(s.base, s.img, s.len, s.psz);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	t_log("pages_exist = %llu", (unsigned long long)st.pages_exist);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	T_ASSERT_EQ(st.store_errors, 0);
	teardown(&s);
	return T_PASS;
}

/* ---- populate ------------------------------------------------------------------- */

static int c_populate(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st;
	size_t first, count;

	setup(&s, c, LEN, 0, 0x909, 1);
	first = s.npages / 4;
	count = s.npages / 2;
	T_ASSERT_EQ(fl_region_populate(s.r, s.len + s.psz, s.psz), -EINVAL);
	T_ASSERT_EQ(fl_region_populate(s.r, s.psz, s.len), -EINVAL);
	T_ASSERT_EQ(fl_region_populate(NULL, 0, s.psz), -EINVAL);
	T_OK(fl_region_populate(s.r, first * s.psz, count * s.psz));
	T_ASSERT(fl_region_resolved_pages(s.r) >= count);
	st = u_rstats_settled(s.r);
	T_ASSERT_EQ(u_faults(&st), 0);
	/* The populated range is mapped: reading it takes no fault. */
	U_CHECK(s.base + first * s.psz, s.img + first * s.psz, count * s.psz, s.psz);
	st = u_rstats_settled(s.r);
	T_ASSERT_EQ(u_faults(&st), 0);
	/* Populating what is already there is a no-op that succeeds. */
	T_OK(fl_region_populate(s.r, first * s.psz, count * s.psz));
	U_CHECK(s.base, s.img, s.len, s.psz);
	st = u_rstats_settled(s.r);
	T_ASSERT(u_faults(&st) > 0);
	T_ASSERT_EQ(fl_region_resolved_pages(s.r), s.npages);
	teardown(&s);
	return T_PASS;
}

/* ---- store offset and the store's end ----------------------------------------- */

static int c_store_offset(void *arg)
{
	const struct u_cfg *c = arg;
	size_t psz = u_cfg_psz(c), off = 3 * psz;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region_opts o;
	struct fl_region *r;
	uint8_t *img;

	u_require_cfg(c, LEN);
	e = u_engine(0, 1);
	img = u_image(LEN + off, 0, 0x0ff5);
	store = u_mem_store(img, LEN + off);
	o = u_ropts(c, LEN, store, 0);
	o.store_offset = off;
	r = u_region_opts(e, &o);
	u_read_threads(fl_region_addr(r), img + off, psz, LEN / psz, 4, 1);
	U_CHECK(fl_region_addr(r), img + off, LEN, psz);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* A region longer than its store: pages past the store's end are SIGBUS, never zeros. */
static int c_past_store_end(void *arg)
{
	const struct u_cfg *c = arg;
	size_t psz = u_cfg_psz(c), npages = LEN / psz, store_pages = npages * 5 / 8;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_region_stats st;
	uint8_t *img, *base;

	u_require_cfg(c, LEN);
	u_bus_install();
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0xe4d);
	store = u_mem_store(img, store_pages * psz);
	r = u_region(e, c, LEN, store, 0);
	base = fl_region_addr(r);
	U_CHECK(base, img, store_pages * psz, psz);
	T_ASSERT_EQ(u_probe_byte(base + store_pages * psz), -1);
	T_ASSERT_EQ(u_probe_byte(base + LEN - 1), -1);
	T_ASSERT_EQ(u_probe_byte(base + store_pages * psz + psz / 2), -1);	/* again: still SIGBUS */
	T_ASSERT_EQ(u_probe_cmp(base + (store_pages + 1) * psz, img + (store_pages + 1) * psz, psz), -1);
	/* Pages inside the store are untouched by the failures. */
	U_CHECK(base, img, store_pages * psz, psz);
	st = u_rstats_settled(r);
	u_log_rstats(c->name, &st);
	T_ASSERT(st.pages_poisoned >= 2);
	T_ASSERT_EQ(fl_region_resolved_pages(r), store_pages);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- fixed address ----------------------------------------------------------------- */

static int c_fixed_addr(void *arg)
{
	const struct u_cfg *c = arg;
	size_t psz = u_cfg_psz(c);
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region_opts o;
	struct fl_region *r, *r2 = (struct fl_region *)(uintptr_t)0x1;
	uint8_t *img, *want;
	int ret;

	u_require_cfg(c, LEN);
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0xf1);
	store = u_mem_store(img, LEN);
	want = u_free_addr(LEN, U_HPAGE);
	o = u_ropts(c, LEN, store, 0);
	o.addr = want;
	r = u_region_opts(e, &o);
	T_ASSERT(fl_region_addr(r) == want, "region at %p, asked for %p", fl_region_addr(r), (void *)want);
	u_read_threads(want, img, psz, LEN / psz, 4, 1);
	/* The address is taken now: a second region there fails, and the first is intact. */
	ret = fl_region_new(e, &o, &r2);
	T_ASSERT(ret < 0, "second region at a taken address: %d", ret);
	T_ASSERT(r2 == (struct fl_region *)(uintptr_t)0x1, "ret_region written on failure");
	/* Unaligned to the page size of the memory. */
	o.addr = u_free_addr(LEN + psz, U_HPAGE) + (c->mem == FL_MEM_HUGETLB ? U_PAGE : 100);
	T_ASSERT_EQ(fl_region_new(e, &o, &r2), -EINVAL);
	U_CHECK(want, img, LEN, psz);
	fl_region_free(r);
	T_ASSERT(!u_mapped(want, U_PAGE), "region memory still mapped after fl_region_free");
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- statistics ------------------------------------------------------------------------ */

static int c_stats(void *arg)
{
	const struct u_cfg *c = arg;
	struct setup s;
	struct fl_region_stats st, part;
	struct fl_engine_stats es;
	uint32_t *perm;
	uint64_t resolved, faults;
	volatile uint8_t *w;

	setup(&s, c, LEN, 0, 0x57a7, 1);
	st = u_rstats_settled(s.r);
	T_ASSERT_EQ(st.lat_count, 0);
	T_ASSERT_EQ(u_faults(&st), 0);
	/* A write fault on an untouched page (writing back the byte the store holds). */
	w = s.base + (s.npages - 1) * s.psz + 5;
	*w = s.img[(s.npages - 1) * s.psz + 5];
	perm = u_perm(s.npages, U_RANDOM, 99);
	for (size_t i = 0; i < s.npages / 2; i++) {
		size_t off = (size_t)perm[i] * s.psz;
		T_ASSERT(memcmp(s.base + off, s.img + off, s.psz) == 0, "page %u", perm[i]);
	}
	free(perm);
	st = u_rstats_settled(s.r);
	u_log_rstats(c->name, &st);
	faults = u_faults(&st);
	resolved = fl_region_resolved_pages(s.r);
	T_ASSERT(faults > 0);
	T_ASSERT(st.faults_write >= 1);
	T_ASSERT_EQ(st.lat_count, faults);
	T_ASSERT(st.lat_p50_ns > 0);
	T_ASSERT(st.lat_p50_ns <= st.lat_p99_ns);
	T_ASSERT(st.lat_p99_ns <= st.lat_max_ns);
	T_ASSERT(st.blocked_ns > 0);
	T_ASSERT(st.blocked_ns >= st.lat_max_ns);
	T_ASSERT(st.bytes_read >= resolved * s.psz);
	if (c->mode == FL_MODE_MISSING)
		T_ASSERT_EQ(st.pages_copy + st.pages_zero, resolved);
	else
		T_ASSERT_EQ(st.pages_continue, resolved);
	T_ASSERT_EQ(st.pages_prefetch + faults, resolved);
	T_ASSERT_EQ(st.pages_background, 0);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	T_ASSERT_EQ(st.store_errors, 0);

	es = u_estats(s.e);
	T_ASSERT_EQ(es.faults, faults);
	T_ASSERT(es.messages >= es.faults);
	T_ASSERT(es.reads >= 1 && es.reads <= es.messages);
	T_ASSERT_EQ(es.unowned_faults, 0);
	T_ASSERT_EQ(es.spaces, 1);

	/* An older, smaller struct gets only the fields it knows. */
	memset(&part, 0xa5, sizeof(part));
	part.sz = offsetof(struct fl_region_stats, pages_copy);
	T_OK(fl_region_stats(s.r, &part));
	T_ASSERT_EQ(part.faults_read, st.faults_read);
	T_ASSERT_EQ(part.pages_copy, 0xa5a5a5a5a5a5a5a5ull);
	T_ASSERT_EQ(part.blocked_ns, 0xa5a5a5a5a5a5a5a5ull);
	T_ASSERT_EQ(fl_region_stats(s.r, NULL), -EINVAL);
	part.sz = 0;
	T_ASSERT_EQ(fl_region_stats(s.r, &part), -EINVAL);
	if (c->mem == FL_MEM_ANON)
		T_ASSERT_EQ(fl_region_memfd(s.r), -1);
	else
		T_ASSERT(fl_region_memfd(s.r) >= 0);
	U_CHECK(s.base, s.img, s.len, s.psz);
	teardown(&s);
	return T_PASS;
}

/* ---- freeing one region leaves the others served ------------------------------------------ */

static int c_free_serve(void *arg)
{
	const struct u_cfg *c = arg;
	size_t len = LEN / 2, psz = u_cfg_psz(c);
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r1, *r2, *r3;
	uint8_t *img, *a1;

	u_require_cfg(c, 3 * len);
	e = u_engine(0, 2);
	img = u_image(len, 0, 0xf4ee);
	store = u_mem_store(img, len);
	r1 = u_region(e, c, len, store, 0);
	r2 = u_region(e, c, len, store, FL_REGION_NO_PREFETCH);
	a1 = fl_region_addr(r1);
	U_CHECK(a1, img, len / 2, psz);		/* half of r1 */
	U_CHECK(fl_region_addr(r2), img, psz, psz);
	T_ASSERT(fl_region_free(r1) == NULL);
	T_ASSERT(!u_mapped(a1, U_PAGE), "freed region still mapped");
	u_read_threads(fl_region_addr(r2), img, psz, len / psz, 4, 1);
	r3 = u_region(e, c, len, store, 0);
	u_read_threads(fl_region_addr(r3), img, psz, len / psz, 2, 1);
	U_CHECK(fl_region_addr(r2), img, len, psz);
	U_CHECK(fl_region_addr(r3), img, len, psz);
	fl_region_free(r2);
	fl_region_free(r3);
	T_ASSERT(fl_region_free(NULL) == NULL);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- option validation (not per configuration) ------------------------------------------------ */

static int c_bad_options(void *arg)
{
	static const struct u_cfg anon = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
	struct fl_engine *e;
	struct fl_region_opts o;
	struct fl_region *sentinel = (struct fl_region *)(uintptr_t)0x1, *r = sentinel;
	(void)arg;

	e = u_engine(0, 1);
	o = u_ropts(&anon, LEN, NULL, 0);
	T_ASSERT_EQ(fl_region_new(NULL, &o, &r), -EINVAL);
	T_ASSERT_EQ(fl_region_new(e, NULL, &r), -EINVAL);
	T_ASSERT_EQ(fl_region_new(e, &o, NULL), -EINVAL);
	o.sz = 0;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = u_ropts(&anon, 0, NULL, 0);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = u_ropts(&anon, LEN, NULL, 0);
	o.mem = (enum fl_mem_type)7;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = u_ropts(&anon, LEN, NULL, 0);
	o.mode = (enum fl_region_mode)5;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	/* MINOR needs a page cache: anonymous memory has none. */
	o = u_ropts(&anon, LEN, NULL, 0);
	o.mode = FL_MODE_MINOR;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	/* PRIVATE is for MINOR clones only. */
	o = u_ropts(&anon, LEN, NULL, FL_REGION_PRIVATE);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	/* FOREIGN needs an address and an adopted space. */
	o = u_ropts(&anon, LEN, NULL, FL_REGION_FOREIGN);
	o.space = 1;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o.addr = u_free_addr(LEN, U_HPAGE);
	o.space = 0;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o.space = 7;	/* never adopted */
	T_ASSERT(fl_region_new(e, &o, &r) < 0);
	/* Unaligned fixed address. */
	o = u_ropts(&anon, LEN, NULL, 0);
	o.addr = u_free_addr(LEN, U_HPAGE) + 8;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	T_ASSERT(r == sentinel, "ret_region written on failure");

	/* Lengths round up to the page. */
	o = u_ropts(&anon, 10000, NULL, 0);
	r = u_region_opts(e, &o);
	T_ASSERT_EQ(fl_region_length(r), 3 * U_PAGE);
	T_ASSERT_EQ(fl_region_page_size(r), U_PAGE);
	T_ASSERT(u_all_zero(fl_region_addr(r), 3 * U_PAGE));
	fl_region_free(r);
	T_ASSERT(fl_region_addr(NULL) == NULL);
	T_ASSERT_EQ(fl_region_length(NULL), 0);
	T_ASSERT_EQ(fl_region_resolved_pages(NULL), 0);
	fl_engine_free(e);
	return T_PASS;
}

/* More huge pages than are reserved: -ENOMEM. */
static int c_hugetlb_enomem(void *arg)
{
	static const struct u_cfg huge = { "hugetlb", FL_MEM_HUGETLB, FL_MODE_MISSING };
	struct fl_engine *e;
	struct fl_region_opts o;
	struct fl_region *r = NULL;
	long total = 0;
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	(void)arg;

	t_require(fl_features_from_uffd(u_cfg_features(&huge)));
	if (f) {
		if (fscanf(f, "%ld", &total) != 1)
			total = 0;
		fclose(f);
	}
	e = u_engine(0, 1);
	o = u_ropts(&huge, (size_t)(total + 16) * U_HPAGE, NULL, 0);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -ENOMEM);
	T_ASSERT(r == NULL);
	fl_engine_free(e);
	return T_PASS;
}

/* Inner cases, run with FAULTLINE_MASK_FEATURES in force from process start. */
static int inner_minor_masked(void *arg)
{
	static const struct u_cfg shm_minor = { "shmem-minor", FL_MEM_SHMEM, FL_MODE_MINOR };
	static const struct u_cfg shm = { "shmem-missing", FL_MEM_SHMEM, FL_MODE_MISSING };
	struct fl_engine *e;
	struct fl_region_opts o;
	struct fl_region *r = NULL;
	uint8_t *img;
	struct fl_store *store;
	(void)arg;

	T_ASSERT(!fl_feature_has(FL_FEATURE_MINOR_SHMEM));
	t_require(FL_FEATURE_BIT(FL_FEATURE_MISSING_SHMEM));
	e = u_engine(0, 1);
	T_ASSERT(!(fl_engine_features(e) & UFFD_FEATURE_MINOR_SHMEM));
	o = u_ropts(&shm_minor, LEN, NULL, 0);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EOPNOTSUPP);
	/* MISSING on shmem does not need the masked feature. */
	img = u_image(LEN, 0, 77);
	store = u_mem_store(img, LEN);
	r = u_region(e, &shm, LEN, store, 0);
	U_CHECK(fl_region_addr(r), img, LEN, U_PAGE);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

static int inner_missing_shmem_masked(void *arg)
{
	static const struct u_cfg shm = { "shmem-missing", FL_MEM_SHMEM, FL_MODE_MISSING };
	struct fl_engine *e;
	struct fl_region_opts o;
	struct fl_region *r = NULL;
	(void)arg;

	e = u_engine(0, 1);
	o = u_ropts(&shm, LEN, NULL, 0);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EOPNOTSUPP);
	fl_engine_free(e);
	return T_PASS;
}

static const struct t_case inner_cases[] = {
	{ "minor-shmem-masked", inner_minor_masked, NULL, 0 },
	{ "missing-shmem-masked", inner_missing_shmem_masked, NULL, 0 },
};

static int c_masked(void *arg)
{
	const char *which = arg;
	if (strcmp(which, "minor-shmem-masked") == 0)
		return u_run_masked("minor_shmem", which);
	return u_run_masked("missing_shmem", which);
}

/* ---- the table -------------------------------------------------------------------------------- */

struct tdef {
	const char *name;
	int (*fn)(void *);
	bool small_pages_only;	/* prefetch windows are 4 KiB pages: meaningless on hugetlb */
	unsigned timeout_s;
};

static const struct tdef tests[] = {
	{ "mem-store-4threads", c_mem_store, false, 0 },
	{ "file-store-4threads", c_file_store, false, 0 },
	{ "zero-store", c_zero_store, false, 0 },
	{ "zero-pages-zeropage", c_zero_pages, false, 0 },
	{ "zero-pages-one-by-one", c_zero_pages_one_by_one, false, 0 },
	{ "prefetch-sequential", c_prefetch_seq, true, 0 },
	{ "no-prefetch", c_no_prefetch, false, 0 },
	{ "prefetch-random", c_prefetch_random, true, 0 },
	{ "background", c_background, false, 0 },
	{ "exist-race", c_exist_race, false, 60 },
	{ "populate", c_populate, false, 0 },
	{ "store-offset", c_store_offset, false, 0 },
	{ "past-store-end-sigbus", c_past_store_end, false, 0 },
	{ "fixed-addr", c_fixed_addr, false, 0 },
	{ "stats", c_stats, false, 0 },
	{ "free-keeps-serving", c_free_serve, false, 0 },
};

int main(int argc, char **argv)
{
	struct t_case cases[U_NCFGS * (sizeof(tests) / sizeof(tests[0])) + 8];
	size_t n = 0;

	u_inner_main(argc, argv, inner_cases, sizeof(inner_cases) / sizeof(inner_cases[0]));
	for (size_t i = 0; i < U_NCFGS; i++) {
		for (size_t j = 0; j < sizeof(tests) / sizeof(tests[0]); j++) {
			char *name;
			if (tests[j].small_pages_only && u_cfgs[i].mem == FL_MEM_HUGETLB)
				continue;
			if (asprintf(&name, "%s/%s", u_cfgs[i].name, tests[j].name) < 0)
				return 99;
			cases[n++] = (struct t_case){ name, tests[j].fn, (void *)&u_cfgs[i], tests[j].timeout_s,
						      U_NEEDS(u_cfgs[i].mem, u_cfgs[i].mode) };
		}
	}
	cases[n++] = (struct t_case){ "bad-options", c_bad_options, NULL, 0 };
	cases[n++] = (struct t_case){ "hugetlb-enomem", c_hugetlb_enomem, NULL, 0, U_NEEDS_HUGETLB };
	cases[n++] = (struct t_case){ "minor-shmem-masked-eopnotsupp", c_masked, (void *)"minor-shmem-masked", 0, U_NEEDS_SHMEM_MINOR };
	cases[n++] = (struct t_case){ "missing-shmem-masked-eopnotsupp", c_masked, (void *)"missing-shmem-masked", 0, U_NEEDS_SHMEM };
	{
		int r = t_main(argc, argv, cases, n);
		for (size_t i = 0; i + 4 < n; i++)
			free((char *)cases[i].name);
		return r;
	}
}
