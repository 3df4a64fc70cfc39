// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Huge fills (lib/region/hugefill.c): anonymous regions fill 2 MiB chunks
 * by reading them into a THP staging buffer and moving them into place
 * with UFFDIO_MOVE. Every case checks every byte against the store and
 * runs twice: as it is (MOVE when the kernel has it: the masked pass has
 * not), and again in a fresh process with MOVE masked ("masked-move/..."),
 * where the same results must come through UFFDIO_COPY.
 */
#include "util.h"
/* fl__move_pages(), the move helper itself (the static library keeps it). */
#include "region-internal.h"

#define CHUNK_PAGES (U_HPAGE / U_PAGE)

static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };

static bool move_on(struct fl_engine *e)
{
	return fl_engine_features(e) & UFFD_FEATURE_MOVE;
}

/* Why a PMD move cannot be expected here (NULL: it can). */
static const char *no_thp_reason(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	bool never;

	if (!f)
		return "no /sys/kernel/mm/transparent_hugepage: a kernel without THP";
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	never = strstr(line, "[never]") != NULL;
	if (never)
		return "transparent huge pages are disabled ([never])";
	if (!fl_feature_has(FL_FEATURE_PAGEMAP_SCAN))
		return "no PAGEMAP_SCAN: the library cannot confirm a huge page, and does not claim one";
	return NULL;
}

/* AnonHugePages (kB) of the mappings in [addr, addr + len), from
 * /proc/self/smaps (a region can be several VMAs: MADV_HUGEPAGE ahead of a
 * sequential stream splits it). */
static uint64_t anon_huge_kb(const void *addr, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)addr;
	char line[512];
	bool in = false;
	uint64_t kb = 0;

	T_ASSERT(f != NULL);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		unsigned long long v;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = lo < a + len && hi > a;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %llu kB", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

/* A faultline image of one region holding img (checksummed pages) at dir/name. */
static void write_image(const char *path, const uint8_t *img, size_t len)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC, .creator = "api-hugefill" };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = len, .prot = 3, .name = "hugefill" };
	struct fl_image_writer *w;

	T_OK(fl_image_writer_new(path, &o, &w));
	T_OK(fl_image_writer_add_region(w, &reg));
	T_OK(fl_image_writer_put(w, 0, 0, len / U_PAGE, img));
	T_OK(fl_image_writer_finish(w, NULL));
}

struct imgstore {
	char dir[256];
	struct fl_image *img;
	struct fl_store *store;
};

static void imgstore_open(struct imgstore *is, const uint8_t *img, size_t len, long corrupt_page)
{
	const char *path;

	T_ASSERT(img != NULL);
	t_tmpdir(is->dir, sizeof(is->dir), "/tmp/fl-hugefill");
	path = t_path_in(is->dir, "a.img");
	write_image(path, img, len);
	if (corrupt_page >= 0) {
		/* Flip a byte of that page's stored copy: its checksum no
		 * longer matches. Found by content: the pattern is unique. */
		size_t flen;
		uint8_t *b = t_read_file(path, &flen);
		const uint8_t *want = img + (size_t)corrupt_page * U_PAGE;
		uint8_t *at;

		T_ASSERT(b != NULL, "cannot read %s", path);
		at = memmem(b, flen, want, U_PAGE);

		T_ASSERT(at != NULL, "page %ld not found in the image file", corrupt_page);
		T_ASSERT(memmem(at + 1, flen - (size_t)(at + 1 - b), want, U_PAGE) == NULL);
		at[100] ^= 0xff;
		t_write_file(path, b, flen);
		free(b);
	}
	T_OK(fl_image_open(path, 0, &is->img));
	T_OK(fl_image_store_new(is->img, 0, &is->store));
}

static void imgstore_close(struct imgstore *is)
{
	fl_store_unref(is->store);
	fl_image_close(is->img);
	t_rmtree(is->dir);
}

/* Does the VMA holding `addr` have VmFlag `flag` ("hg": MADV_HUGEPAGE,
 * "nh": MADV_NOHUGEPAGE)? */
static bool vma_has_flag(const void *addr, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)addr;
	char line[512], want[8];
	bool in = false, has = false;

	T_ASSERT(f != NULL);
	snprintf(want, sizeof(want), " %s", flag);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = lo <= a && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8))
			has = strstr(line, want) != NULL;
	}
	fclose(f);
	return has;
}

/* After a whole region was filled: pages moved in when MOVE is there, and
 * with `expect_huge`, huge moves when THP is there too, confirmed by the
 * kernel's own count of huge pages in the mapping; none of either kind
 * without MOVE. */
static void check_moves(struct fl_engine *e, struct fl_region *r, const struct fl_region_stats *st, bool expect_huge)
{
	const char *why = no_thp_reason();

	if (!move_on(e)) {
		T_ASSERT_EQ(st->huge_moves, 0);
		T_ASSERT_EQ(st->pages_moved, 0);
		return;
	}
	T_ASSERT(st->huge_moves * CHUNK_PAGES + st->pages_moved > 0, "MOVE available, nothing moved");
	if (!expect_huge)
		return;
	if (why) {
		t_log("huge moves not asserted: %s", why);
		return;
	}
	T_ASSERT(st->huge_moves > 0, "MOVE and THP available, no huge move");
	T_ASSERT(anon_huge_kb(fl_region_addr(r), fl_region_length(r)) >= st->huge_moves * (U_HPAGE / 1024),
		 "smaps: %llu kB AnonHugePages for %llu huge moves",
		 (unsigned long long)anon_huge_kb(fl_region_addr(r), fl_region_length(r)),
		 (unsigned long long)st->huge_moves);
}

/* ---- 64 MiB from an image, four threads faulting at random, the filler running -------------- */

static int c_image_64m(void *arg)
{
	size_t len = 64 * U_MIB, npages = len / U_PAGE;
	uint32_t seed = (uint32_t)(t_now_ns() ^ (uint64_t)getpid());
	struct fl_region_opts o = u_ropts(&anon, len, NULL, FL_REGION_BACKGROUND);
	struct u_reader rd[4];
	pthread_barrier_t bar;
	struct fl_region_stats st;
	struct imgstore is;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *img, *base;
	(void)arg;

	t_log("pattern seed 0x%08x", seed);
	img = u_image(len, 0, seed);
	imgstore_open(&is, img, len, -1);
	e = u_engine(0, 2);
	o.store = is.store;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	pthread_barrier_init(&bar, NULL, 4);
	for (unsigned i = 0; i < 4; i++) {
		rd[i] = (struct u_reader){
			.base = base, .expect = img, .psz = U_PAGE, .npages = npages,
			.order = U_RANDOM, .rseed = seed + 7919u * (i + 1), .bar = &bar,
		};
		T_ASSERT(pthread_create(&rd[i].tid, NULL, u_reader_main, &rd[i]) == 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(rd[i].tid, NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned i = 0; i < 4; i++)
		T_ASSERT(rd[i].bad_page < 0, "reader %u: page %ld differs%s", i, rd[i].bad_page,
			 rd[i].bad_zero ? " (all zeros)" : "");
	U_CHECK(base, img, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("image-64m", &st);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	T_ASSERT_EQ(st.store_errors, 0);
	T_ASSERT_EQ(st.pages_copy + st.pages_zero, npages);
	/* Random faults take their 4 KiB page at once: the filler moves in
	 * chunks it finds untouched whole, the others page by page. */
	check_moves(e, r, &st, false);
	fl_region_free(r);
	fl_engine_free(e);
	imgstore_close(&is);
	munmap(img, len);
	return T_PASS;
}

/* ---- one sequential reader: the image's chunks come in as huge pages ------------------------ */

static int c_sequential(void *arg)
{
	size_t len = 16 * U_MIB, npages = len / U_PAGE;
	struct fl_region_stats st;
	struct imgstore is;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *img;
	(void)arg;

	img = u_image(len, 0, 0x5e9);
	imgstore_open(&is, img, len, -1);
	e = u_engine(0, 1);
	r = u_region(e, &anon, len, is.store, 0);
	U_CHECK(fl_region_addr(r), img, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("sequential", &st);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages);
	T_ASSERT_EQ(st.pages_copy + st.pages_zero, npages);
	T_ASSERT_EQ(st.pages_prefetch + u_faults(&st), npages);
	/* The stream's first fault takes its 4 KiB page at once, and its
	 * prefetch stops at the end of chunk 0; every later chunk continues
	 * the stream and is moved in whole. */
	if (move_on(e)) {
		T_ASSERT_EQ(st.huge_moves * CHUNK_PAGES + st.pages_moved, npages - CHUNK_PAGES);
		T_ASSERT(vma_has_flag(fl_region_addr(r) + len - U_PAGE, "hg"), "the stream did not advise MADV_HUGEPAGE");
	}
	check_moves(e, r, &st, true);
	fl_region_free(r);
	fl_engine_free(e);
	imgstore_close(&is);
	munmap(img, len);
	return T_PASS;
}

/* ---- a slow staging huge page pauses huge fills ------------------------------------------- */

/*
 * FAULTLINE_HUGE_SLOW_US=0: every staging THP counts as slow to fault in
 * (on these VMs one taken from a block the host had back costs 5-25 ms).
 * The stream's first huge fill (the probe) is still moved in whole; the
 * region then fills 4 KiB pages for the pause (1 s, longer than this
 * case), so exactly one chunk is moved, and every byte still arrives.
 */
static int c_slow_thp(void *arg)
{
	size_t len = 16 * U_MIB, npages = len / U_PAGE;
	struct fl_region_stats st;
	struct imgstore is;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *img;
	uint64_t t0;
	(void)arg;

	setenv("FAULTLINE_HUGE_SLOW_US", "0", 1);
	img = u_image(len, 0, 0x51e);
	imgstore_open(&is, img, len, -1);
	e = u_engine(0, 1);
	t0 = t_now_ns();
	r = u_region(e, &anon, len, is.store, 0);
	U_CHECK(fl_region_addr(r), img, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("slow-thp", &st);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages);
	T_ASSERT_EQ(st.pages_copy + st.pages_zero, npages);
	if (!move_on(e)) {
		T_ASSERT_EQ(st.huge_moves + st.pages_moved, 0);
	} else if (t_now_ns() - t0 < 900ull * 1000 * 1000) {
		/* The probe's chunk, whole (a PMD or 512 moves), and no more;
		 * and the stream's MADV_HUGEPAGE undone for the pause (a
		 * first write there would clear a huge page). */
		T_ASSERT_EQ(st.huge_moves * CHUNK_PAGES + st.pages_moved, CHUNK_PAGES);
		T_ASSERT(vma_has_flag(fl_region_addr(r) + len - U_PAGE, "nh"), "the region's tail is not MADV_NOHUGEPAGE");
		T_ASSERT(!vma_has_flag(fl_region_addr(r) + len - U_PAGE, "hg"), "the region's tail is still MADV_HUGEPAGE");
	} else {
		t_log("slow-thp: the walk outlasted the pause; moves not counted");
	}
	fl_region_free(r);
	fl_engine_free(e);
	imgstore_close(&is);
	munmap(img, len);
	return T_PASS;
}

/* ---- the credit: a lone slow staging page is absorbed, two are not ------------------------- */

/*
 * fl__huge_cost() fed made-up fault-in times (the machine's own are not
 * up to the test): a fast probe, fast pages up to the credit's cap (25 ms),
 * a 20 ms page absorbed, a second one pausing; after the pause a slow
 * probe, with no credit, pauses again at once. fl__huge_chunk() says what
 * a filler would be allowed; the region still reads back whole.
 */
static int c_credit(void *arg)
{
	size_t len = 8 * U_MIB;
	struct fl_store *store;
	struct fl_engine *e;
	struct fl_region *r;
	uintptr_t base;
	uint8_t *img;
	(void)arg;

	setenv("FAULTLINE_HUGE_SLOW_US", "1000", 1);
	img = u_image(len, 0, 0xc4ed);
	store = u_mem_store(img, len);
	e = u_engine(0, 1);
	r = u_region(e, &anon, len, store, 0);
	base = (uintptr_t)fl_region_addr(r);
	T_ASSERT_EQ(r->huge_slow_ns, 1000u * 1000);
	T_ASSERT_EQ(atomic_load(&r->huge_state), FL__HUGE_UNKNOWN);
	fl__huge_cost(r, 200 * 1000, true);
	T_ASSERT_EQ(atomic_load(&r->huge_state), FL__HUGE_FAST);
	for (int i = 0; i < 200; i++)
		fl__huge_cost(r, 200 * 1000, false);
	T_ASSERT_EQ(atomic_load(&r->huge_credit), 25ll * 1000 * 1000);
	fl__huge_cost(r, 20ull * 1000 * 1000, false);
	T_ASSERT_EQ(atomic_load(&r->huge_state), FL__HUGE_FAST);
	T_ASSERT_EQ(atomic_load(&r->huge_credit), 5ll * 1000 * 1000);
	if (move_on(e))
		T_ASSERT_EQ(fl__huge_chunk(r, base, CHUNK_PAGES, base, base + len, true), CHUNK_PAGES);
	fl__huge_cost(r, 20ull * 1000 * 1000, false);
	T_ASSERT_EQ(atomic_load(&r->huge_state), FL__HUGE_SLOW);
	T_ASSERT_EQ(atomic_load(&r->huge_credit), 0);
	T_ASSERT(atomic_load(&r->huge_slow_until) > t_now_ns() + 500ull * 1000 * 1000);
	T_ASSERT_EQ(fl__huge_chunk(r, base, CHUNK_PAGES, base, base + len, true), UINT64_MAX);
	/* The pause over: a filler may probe (a demand fault too: no filler
	 * here), and a slow probe pauses at once. */
	atomic_store(&r->huge_slow_until, 0);
	if (move_on(e)) {
		T_ASSERT_EQ(fl__huge_chunk(r, base, CHUNK_PAGES, base, base + len, true), CHUNK_PAGES);
		T_ASSERT_EQ(fl__huge_chunk(r, base, CHUNK_PAGES, base, base + len, false), CHUNK_PAGES);
	}
	fl__huge_cost(r, 2ull * 1000 * 1000, true);
	T_ASSERT_EQ(atomic_load(&r->huge_state), FL__HUGE_SLOW);
	T_ASSERT_EQ(fl__huge_chunk(r, base, CHUNK_PAGES, base, base + len, true), UINT64_MAX);
	U_CHECK(fl_region_addr(r), img, len, U_PAGE);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	return T_PASS;
}

/* ---- four threads fault in the same chunk at once, chunk after chunk ------------------------ */

struct same_chunk {
	pthread_barrier_t *bar;
	const uint8_t *base, *img;
	size_t nchunks;
	unsigned idx;
	long bad_page;
};

static void *same_chunk_main(void *arg)
{
	struct same_chunk *sc = arg;

	sc->bad_page = -1;
	for (size_t c = 1; c < sc->nchunks; c++) {
		size_t page = c * CHUNK_PAGES + 60 * sc->idx + 5;

		pthread_barrier_wait(sc->bar);
		if (sc->bad_page < 0 && memcmp(sc->base + page * U_PAGE, sc->img + page * U_PAGE, U_PAGE))
			sc->bad_page = (long)page;
	}
	return NULL;
}

static int c_same_chunk(void *arg)
{
	size_t len = 32 * U_MIB, npages = len / U_PAGE;
	struct same_chunk sc[4];
	pthread_t tid[4];
	pthread_barrier_t bar;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *store;
	uint8_t *img;
	(void)arg;

	img = u_image(len, 0, 0x5a3e);
	store = u_mem_store(img, len);
	e = u_engine(0, 2);
	r = u_region(e, &anon, len, store, 0);
	/* A sequential stream through chunk 0: then every chunk the four
	 * threads fault in at once continues it, and is filled whole by the
	 * first of their faults while the others wait for it. */
	U_CHECK(fl_region_addr(r), img, U_HPAGE, U_PAGE);
	pthread_barrier_init(&bar, NULL, 4);
	for (unsigned i = 0; i < 4; i++) {
		sc[i] = (struct same_chunk){ .bar = &bar, .base = fl_region_addr(r), .img = img,
					     .nchunks = len / U_HPAGE, .idx = i };
		T_ASSERT(pthread_create(&tid[i], NULL, same_chunk_main, &sc[i]) == 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned i = 0; i < 4; i++)
		T_ASSERT(sc[i].bad_page < 0, "thread %u: page %ld differs", i, sc[i].bad_page);
	U_CHECK(fl_region_addr(r), img, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("same-chunk", &st);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages);
	T_ASSERT_EQ(st.pages_copy + st.pages_zero, npages);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	/* Chunks 1 to 15 moved in; a thread that waited for its chunk
	 * longer than the library waits (20 ms) took its page by COPY. */
	if (move_on(e))
		T_ASSERT(st.huge_moves * CHUNK_PAGES + st.pages_moved >= (len / U_HPAGE - 1) * (CHUNK_PAGES - 3),
			 "huge moves %llu, pages moved %llu", (unsigned long long)st.huge_moves,
			 (unsigned long long)st.pages_moved);
	check_moves(e, r, &st, true);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	return T_PASS;
}

/* ---- pages the application wrote before (and while) their chunk is filled ------------------- */

struct writer {
	uint8_t *base;
	size_t first, count;		/* pages it writes, one in 7 */
	uint8_t mark;
};

static void *writer_main(void *arg)
{
	struct writer *wr = arg;

	for (size_t p = wr->first; p < wr->first + wr->count; p += 7)
		memset(wr->base + p * U_PAGE, wr->mark, U_PAGE);
	return NULL;
}

static int c_app_bytes(void *arg)
{
	size_t len = 8 * U_MIB, npages = len / U_PAGE;
	struct writer wr[2];
	pthread_t tid[2];
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *store;
	uint8_t *img, *expect, *base;
	(void)arg;

	img = u_image(len, 0, 0xa4b);
	expect = u_image(len, 0, 0xa4b);
	store = u_mem_store(img, len);
	e = u_engine(0, 2);
	r = u_region(e, &anon, len, store, 0);
	base = fl_region_addr(r);
	/* Chunks 1 and 2 get a few pages first (a range smaller than a chunk
	 * is filled 4 KiB at a time), and the application writes them. */
	T_OK(fl_region_populate(r, 600 * U_PAGE, 3 * U_PAGE));
	memset(base + 600 * U_PAGE, 0xa5, 3 * U_PAGE);
	memset(expect + 600 * U_PAGE, 0xa5, 3 * U_PAGE);
	T_OK(fl_region_populate(r, 1500 * U_PAGE, U_PAGE));
	memset(base + 1500 * U_PAGE, 0x5a, U_PAGE);
	memset(expect + 1500 * U_PAGE, 0x5a, U_PAGE);
	/* Chunk 3 is written while populate fills the region. */
	for (unsigned i = 0; i < 2; i++) {
		wr[i] = (struct writer){ .base = base, .first = 3 * CHUNK_PAGES + i, .count = CHUNK_PAGES - 1,
					 .mark = (uint8_t)(0xc0 + i) };
		for (size_t p = wr[i].first; p < wr[i].first + wr[i].count; p += 7)
			memset(expect + p * U_PAGE, wr[i].mark, U_PAGE);
		T_ASSERT(pthread_create(&tid[i], NULL, writer_main, &wr[i]) == 0);
	}
	T_OK(fl_region_populate(r, 0, len));
	for (unsigned i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	U_CHECK(base, expect, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("app-bytes", &st);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	if (move_on(e)) {
		/* Chunks 1 and 2: only their missing pages, moved one by one. */
		T_ASSERT(st.pages_moved >= 2 * CHUNK_PAGES - 4, "pages_moved %llu",
			 (unsigned long long)st.pages_moved);
	} else {
		T_ASSERT_EQ(st.pages_moved + st.huge_moves, 0);
	}
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	munmap(expect, len);
	return T_PASS;
}

/* ---- a corrupt store page inside a chunk ---------------------------------------------------- */

static int c_corrupt_page(void *arg)
{
	size_t len = 8 * U_MIB, npages = len / U_PAGE;
	const long bad = 700;		/* in chunk 1 */
	struct fl_region_stats st;
	struct imgstore is;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *img, *base;
	const char *why = no_thp_reason();
	(void)arg;

	img = u_image(len, 0, 0xbad);
	imgstore_open(&is, img, len, bad);
	e = u_engine(0, 1);
	u_bus_install();
	/* Once by demand faults, once by populate. */
	for (int pass = 0; pass < 2; pass++) {
		r = u_region(e, &anon, len, is.store, 0);
		base = fl_region_addr(r);
		if (pass == 1)
			T_ASSERT(fl_region_populate(r, 0, len) < 0);
		for (size_t p = 0; p < npages; p++) {
			int got = u_probe_cmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE);

			T_ASSERT_EQ(got, (long)p == bad ? -1 : 0);
		}
		/* Still poisoned: never zeros on a second look. */
		T_ASSERT_EQ(u_probe_byte(base + bad * U_PAGE), -1);
		st = u_rstats_settled(r);
		u_log_rstats(pass ? "corrupt-populate" : "corrupt-demand", &st);
		/* Without POISON each of the two accesses to it was failed
		 * closed (SIGBUS to the thread) and counted. */
		T_ASSERT_EQ(st.pages_poisoned, (fl_engine_features(e) & UFFD_FEATURE_POISON) ? 1 : 2);
		T_ASSERT(st.store_errors > 0);
		/* Chunks 2 and 3 are sound and reached by a sequential
		 * stream (chunk 0 takes the stream's first fault: 4 KiB
		 * pages); populate takes chunk 0 whole too. */
		if (move_on(e) && !why)
			T_ASSERT(st.huge_moves >= (pass ? 3u : 2u), "huge moves %llu",
				 (unsigned long long)st.huge_moves);
		fl_region_free(r);
	}
	fl_engine_free(e);
	imgstore_close(&is);
	munmap(img, len);
	return T_PASS;
}

/* ---- MADV_DONTNEED over huge-filled memory -------------------------------------------------- */

static int c_discard(void *arg)
{
	size_t len = 8 * U_MIB;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *store;
	uint8_t *img, *base;
	(void)arg;

	t_require_needs(T_EVENT_REMOVE);
	img = u_image(len, 0, 0xd15c);
	store = u_mem_store(img, len);
	e = u_engine(0, 1);
	r = u_region(e, &anon, len, store, 0);
	base = fl_region_addr(r);
	T_OK(fl_region_populate(r, 0, len));
	U_CHECK(base, img, len, U_PAGE);
	/* 256 KiB inside chunk 1 (its huge page is split) and all of chunk 2. */
	T_ASSERT(madvise(base + U_HPAGE + 256 * U_PAGE, 64 * U_PAGE, MADV_DONTNEED) == 0);
	T_ASSERT(madvise(base + 2 * U_HPAGE, U_HPAGE, MADV_DONTNEED) == 0);
	U_WAIT_ESTAT(e, events_remove, 2);
	memset(img + U_HPAGE + 256 * U_PAGE, 0, 64 * U_PAGE);
	memset(img + 2 * U_HPAGE, 0, U_HPAGE);
	U_CHECK(base, img, len, U_PAGE);
	st = u_rstats_settled(r);
	u_log_rstats("discard", &st);
	T_ASSERT_EQ(st.pages_poisoned, 0);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	return T_PASS;
}

/* ---- the region freed while the filler works on it ------------------------------------------ */

static int c_free_during_fill(void *arg)
{
	size_t len = 32 * U_MIB;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	uint8_t *img;
	(void)arg;

	img = u_image(len, 0, 0xf4ee);
	store = u_mem_store(img, len);
	e = u_engine(0, 1);
	for (unsigned i = 0; i < 8; i++) {
		r = u_region(e, &anon, len, store, FL_REGION_BACKGROUND);
		t_sleep_ms(i % 4);
		T_ASSERT(fl_region_free(r) == NULL);
	}
	/* The engine (and its filler's staging buffer) still serve. */
	r = u_region(e, &anon, len, store, FL_REGION_BACKGROUND);
	U_CHECK(fl_region_addr(r), img, len, U_PAGE);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	return T_PASS;
}

/* ---- the flags that keep 4 KiB fills ---------------------------------------------------------- */

static int c_flags_off(void *arg)
{
	static const unsigned flags[] = { FL_REGION_NO_HUGE_FILL, FL_REGION_NO_THP, FL_REGION_NO_PREFETCH };
	size_t len = 8 * U_MIB;
	struct fl_engine *e;
	struct fl_store *store;
	uint8_t *img;
	(void)arg;

	img = u_image(len, 0, 0xf1a6);
	store = u_mem_store(img, len);
	e = u_engine(0, 1);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct fl_region *r = u_region(e, &anon, len, store, flags[i] | FL_REGION_BACKGROUND);
		struct fl_region_stats st;

		U_CHECK(fl_region_addr(r), img, len, U_PAGE);
		st = u_rstats_settled(r);
		T_ASSERT_EQ(st.huge_moves, 0);
		T_ASSERT_EQ(st.pages_moved, 0);
		fl_region_free(r);
	}
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(img, len);
	return T_PASS;
}

/* ---- the move helper alone: into a registered range and out of it --------------------------- */

/* len bytes at a 2 MiB-aligned address (the rest of the reservation unmapped). */
static uint8_t *map_aligned(size_t len)
{
	uint8_t *p = mmap(NULL, len + U_HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t a;

	T_ASSERT(p != MAP_FAILED);
	a = ((uintptr_t)p + U_HPAGE - 1) & ~(uintptr_t)(U_HPAGE - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((void *)(a + len), (uintptr_t)p + U_HPAGE - a);
	return (uint8_t *)a;
}

static bool resident(const void *p, size_t len, size_t *ret_count)
{
	unsigned char v[CHUNK_PAGES];
	size_t n = 0;

	T_ASSERT(len <= sizeof(v) * U_PAGE && mincore((void *)p, len, v) == 0);
	for (size_t i = 0; i < len / U_PAGE; i++)
		n += v[i] & 1;
	*ret_count = n;
	return n == len / U_PAGE;
}

static int c_move_helper(void *arg)
{
	int uffd = t_uffd(UFFD_FEATURE_MOVE);
	uint8_t *area = map_aligned(3 * U_HPAGE), *buf = map_aligned(U_HPAGE), *out = map_aligned(U_HPAGE);
	uint8_t *expect = u_image(3 * U_HPAGE, 0, 0x3e1);
	uint8_t app[U_PAGE];
	struct fl__move_result res = { 0 };
	size_t n;
	pid_t child;
	(void)arg;

	T_OK(fl_uffd_register(uffd, area, 3 * U_HPAGE, FL_REG_MISSING, NULL));
	T_OK(fl_uffd_register(uffd, out, U_HPAGE, FL_REG_MISSING, NULL));
	madvise(buf, U_HPAGE, MADV_HUGEPAGE);

	/* In: chunk 0, whole. The source is left without its pages. */
	memcpy(buf, expect, U_HPAGE);
	T_OK(fl__move_pages(uffd, (uintptr_t)area, (uintptr_t)buf, CHUNK_PAGES, 0, &res));
	T_ASSERT_EQ(res.moved, CHUNK_PAGES);
	T_ASSERT(memcmp(area, expect, U_HPAGE) == 0);
	resident(buf, U_HPAGE, &n);
	T_ASSERT_EQ(n, 0);

	/* In, over a present page: chunk 1 with its page 5 already there
	 * (placed by COPY with other bytes): it is skipped, and kept. */
	memset(app, 0xa5, sizeof(app));
	T_OK(fl_uffd_copy(uffd, area + U_HPAGE + 5 * U_PAGE, app, U_PAGE, 0, NULL));
	memcpy(expect + U_HPAGE + 5 * U_PAGE, app, U_PAGE);
	memcpy(buf, expect + U_HPAGE, U_HPAGE);
	res = (struct fl__move_result){ 0 };
	T_OK(fl__move_pages(uffd, (uintptr_t)(area + U_HPAGE), (uintptr_t)buf, CHUNK_PAGES, 0, &res));
	T_ASSERT_EQ(res.moved, CHUNK_PAGES - 1);
	T_ASSERT_EQ(res.existed, 1);
	T_ASSERT(memcmp(area + U_HPAGE, expect + U_HPAGE, U_HPAGE) == 0);
	munmap(buf, U_HPAGE);

	/* Out: chunk 0 moved into another registered range (eviction's
	 * direction); the area no longer has those pages. */
	res = (struct fl__move_result){ 0 };
	T_OK(fl__move_pages(uffd, (uintptr_t)out, (uintptr_t)area, CHUNK_PAGES, 0, &res));
	T_ASSERT_EQ(res.moved, CHUNK_PAGES);
	T_ASSERT(memcmp(out, expect, U_HPAGE) == 0);
	resident(area, U_HPAGE, &n);
	T_ASSERT_EQ(n, 0);

	/* A source shared with a fork cannot be moved (EBUSY): refused
	 * without FL__MOVE_OR_COPY, copied with it. */
	buf = map_aligned(64 * U_PAGE);
	madvise(buf, 64 * U_PAGE, MADV_NOHUGEPAGE);
	memcpy(buf, expect + 2 * U_HPAGE, 64 * U_PAGE);
	child = fork();
	T_ASSERT(child >= 0);
	if (child == 0) {
		pause();
		_exit(0);
	}
	res = (struct fl__move_result){ 0 };
	T_ASSERT_EQ(fl__move_pages(uffd, (uintptr_t)(area + 2 * U_HPAGE), (uintptr_t)buf, 64, 0, &res), -EBUSY);
	T_ASSERT_EQ(res.moved, 0);
	res = (struct fl__move_result){ 0 };
	T_OK(fl__move_pages(uffd, (uintptr_t)(area + 2 * U_HPAGE), (uintptr_t)buf, 64, FL__MOVE_OR_COPY, &res));
	T_ASSERT_EQ(res.refused, -EBUSY);
	T_ASSERT_EQ(res.copied, 64);
	T_ASSERT(memcmp(area + 2 * U_HPAGE, expect + 2 * U_HPAGE, 64 * U_PAGE) == 0);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(uffd);
	return T_PASS;
}

/* ---- the table ---------------------------------------------------------------------------------- */

static const struct t_case hf_cases[] = {
	{ "image-64m-filler-4threads", c_image_64m, NULL, 120 },
	{ "sequential-image", c_sequential, NULL, 60 },
	{ "slow-thp-pauses", c_slow_thp, NULL, 60 },
	{ "credit-absorbs-a-lone-slow-page", c_credit, NULL, 60 },
	{ "same-chunk-4threads", c_same_chunk, NULL, 60 },
	{ "app-bytes-kept", c_app_bytes, NULL, 60 },
	{ "corrupt-page-sigbus", c_corrupt_page, NULL, 60 },
	{ "discard", c_discard, NULL, 60 },
	{ "free-during-fill", c_free_during_fill, NULL, 60 },
	{ "flags-off", c_flags_off, NULL, 60 },
};
#define NCASES (sizeof(hf_cases) / sizeof(hf_cases[0]))

/* The same case in a fresh process with MOVE masked: the COPY fallback. */
static int c_masked_move(void *arg)
{
	return u_run_masked("move", arg);
}

int main(int argc, char **argv)
{
	struct t_case cases[2 * NCASES + 1];
	size_t n = 0;

	/* A staging huge page is never too slow here (a region pauses its
	 * huge fills after a slow one: whether one is slow depends on what
	 * the machine freed last); slow-thp-pauses sets it itself. */
	setenv("FAULTLINE_HUGE_SLOW_US", "60000000", 1);
	u_inner_main(argc, argv, hf_cases, NCASES);
	for (size_t i = 0; i < NCASES; i++)
		cases[n++] = hf_cases[i];
	cases[n++] = (struct t_case){ "move-helper-in-and-out", c_move_helper, NULL, 60, T_MOVE };
	for (size_t i = 0; i < NCASES; i++) {
		char *name;
		if (asprintf(&name, "masked-move/%s", hf_cases[i].name) < 0)
			return 99;
		cases[n++] = (struct t_case){ name, c_masked_move, (void *)hf_cases[i].name,
					      2 * hf_cases[i].timeout_s };
	}
	{
		int r = t_main(argc, argv, cases, n);
		for (size_t i = NCASES + 1; i < n; i++)
			free((char *)cases[i].name);
		return r;
	}
}
