// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Working sets (lib/workingset.c): the recorded order is exactly the order
 * of first touches; files round-trip and are refused when corrupt, stale or
 * foreign; a replay gives the same bytes as a plain lazy restore on every
 * memory type and mode, with fewer demand faults; store errors met by a
 * replay still fail closed; a region freed mid-replay stops it.
 */
#include "util.h"

#include <faultline/image.h>
#include <faultline/workingset.h>

#define WS_LEN (8u << 20)

struct ws_env {
	char dir[64], img[96], img2[96], ws[96];
	uint8_t *bytes, *bytes2;
	struct fl_image *image, *image2;
};

/* Two images in a temporary directory: `img` (two regions) and `img2`. */
static void env_new(struct ws_env *v, size_t len)
{
	struct fl_range rg[2];

	t_tmpdir(v->dir, sizeof(v->dir), "/tmp/fl-ws");
	snprintf(v->img, sizeof(v->img), "%s/img", v->dir);
	snprintf(v->img2, sizeof(v->img2), "%s/img2", v->dir);
	snprintf(v->ws, sizeof(v->ws), "%s/img.ws", v->dir);
	v->bytes = u_image(len, 0, 0x5e7);
	v->bytes2 = u_image(len, 0, 0x5e8);
	rg[0] = (struct fl_range){ (uintptr_t)v->bytes, len };
	rg[1] = (struct fl_range){ (uintptr_t)v->bytes2, len };
	T_OK(fl_image_write_ranges(v->img, rg, 2, NULL));
	T_OK(fl_image_write_ranges(v->img2, &rg[1], 1, NULL));
	T_OK(fl_image_open(v->img, 0, &v->image));
	T_OK(fl_image_open(v->img2, 0, &v->image2));
}

static void env_free(struct ws_env *v)
{
	fl_image_close(v->image);
	fl_image_close(v->image2);
	T_OK(t_rmtree(v->dir));
}

static struct fl_store *image_store(struct ws_env *v)
{
	struct fl_store *st;
	T_OK(fl_image_store_new(v->image, 0, &st));
	return st;
}

static int test_record_order(void *arg)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	size_t npages = WS_LEN / U_PAGE, n = 0;
	struct fl_region_stats st;
	struct ws_env v;
	struct fl_working_set *ws, *back;
	struct fl_engine *e = u_engine(0, 1);
	struct fl_store *store;
	struct fl_region *r;
	uint32_t *perm = u_perm(npages, U_RANDOM, 99), *want = calloc(npages, 4);
	uint8_t *seen = calloc(npages, 1);
	volatile uint8_t *mem;

	(void)arg;
	env_new(&v, WS_LEN);
	store = image_store(&v);
	r = u_region(e, &anon, WS_LEN, store, 0);
	mem = fl_region_addr(r);
	T_OK(fl_region_record(r));
	T_ASSERT_EQ(fl_region_record(r), -EALREADY);
	/* 600 touches, some pages twice: the set holds first touches, in order. */
	for (size_t i = 0; i < 600; i++) {
		uint32_t p = perm[i % 500];
		(void)mem[(size_t)p * U_PAGE + i % U_PAGE];
		if (!seen[p]) {
			seen[p] = 1;
			want[n++] = p;
		}
	}
	T_OK(fl_region_record_stop(r, &ws));
	T_ASSERT_EQ(fl_region_record_stop(r, &ws), -EINVAL);
	T_ASSERT_EQ(fl_working_set_pages(ws), n);
	T_ASSERT_EQ(fl_working_set_page_size(ws), U_PAGE);
	st = u_rstats(r);
	/* Recording resolves exactly the faulting page: one fault per page. */
	T_ASSERT_EQ(u_faults(&st), n);
	T_ASSERT_EQ(st.pages_prefetch, 0);
	/* Prefetching is back once recording stops. */
	for (size_t p = 0; p < npages; p++)
		if (!seen[p])
			(void)mem[p * U_PAGE];
	st = u_rstats_settled(r);
	T_ASSERT(u_faults(&st) < npages, "%llu faults for %zu pages after recording stopped",
		 (unsigned long long)u_faults(&st), npages);
	T_ASSERT(memcmp((const void *)mem, v.bytes, WS_LEN) == 0);

	/* Save and load: the same pages in the same order. */
	T_OK(fl_working_set_save(ws, v.ws, v.image, 0));
	T_OK(fl_working_set_load(v.ws, v.image, 0, &back));
	T_ASSERT_EQ(fl_working_set_pages(back), n);
	{
		/* The file's payload is the order itself (little-endian u32s). */
		uint8_t *file = malloc(64 + 4 * npages);
		int fd = open(v.ws, O_RDONLY);
		T_ASSERT(fd >= 0 && file);
		T_ASSERT(read(fd, file, 64 + 4 * npages) == (ssize_t)(64 + 4 * n));
		close(fd);
		for (size_t i = 0; i < n; i++) {
			uint32_t p;
			memcpy(&p, file + 64 + 4 * i, 4);
			T_ASSERT(p == want[i], "entry %zu: page %u, first touched %u", i, p, want[i]);
		}
		free(file);
	}
	T_OK(fl_working_set_save(ws, v.ws, NULL, 0));
	fl_working_set_free(back);
	/* A file bound to no image loads without an image check only. */
	T_OK(fl_working_set_load(v.ws, NULL, 0, &back));
	fl_working_set_free(back);
	T_ASSERT_EQ(fl_working_set_load(v.ws, v.image, 0, &back), -ESTALE);

	fl_working_set_free(ws);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	env_free(&v);
	free(perm);
	free(want);
	free(seen);
	return T_PASS;
}

/* Every way a file can be wrong is refused, with the error that says why. */
static int test_bad_files(void *arg)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	struct ws_env v;
	struct fl_working_set *ws, *got;
	struct fl_engine *e = u_engine(0, 1);
	struct fl_store *store;
	struct fl_region *r, *small;
	uint8_t good[8192], bad[8192];
	char path[128];
	size_t len;

	(void)arg;
	env_new(&v, WS_LEN);
	store = image_store(&v);
	r = u_region(e, &anon, WS_LEN, store, 0);
	T_OK(fl_region_record(r));
	for (size_t p = 0; p < 100; p++)
		(void)((volatile uint8_t *)fl_region_addr(r))[p * 7 * U_PAGE];
	T_OK(fl_region_record_stop(r, &ws));
	T_OK(fl_working_set_save(ws, v.ws, v.image, 0));
	{
		uint8_t *file = t_read_file(v.ws, &len);
		T_ASSERT(len > 0 && len <= sizeof(good), "working set file of %zu bytes", len);
		memcpy(good, file, len);
		free(file);
	}
	T_ASSERT_EQ(len, 64 + 100 * 4);
	snprintf(path, sizeof(path), "%s/bad.ws", v.dir);

	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -ENOENT);
	t_write_file(path, "not a working set, just text that is long enough to be read as a header", 72);
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EPROTO);
	t_write_file(path, good, 10);		/* shorter than a header */
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EPROTO);
	memcpy(bad, good, len);
	bad[8] = 9;				/* a version we do not read */
	t_write_file(path, bad, len);
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EPROTO);
	t_write_file(path, good, len - 4);	/* truncated */
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EBADMSG);
	memcpy(bad, good, len);
	bad[64 + 40] ^= 1;			/* a page number flipped */
	t_write_file(path, bad, len);
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EBADMSG);
	memcpy(bad, good, len);
	bad[33] ^= 1;				/* the image id, checksum not updated */
	t_write_file(path, bad, len);
	T_ASSERT_EQ(fl_working_set_load(path, v.image, 0, &got), -EBADMSG);
	/* Well-formed but for another image or region: stale. */
	T_ASSERT_EQ(fl_working_set_load(v.ws, v.image2, 0, &got), -ESTALE);
	T_ASSERT_EQ(fl_working_set_load(v.ws, v.image, 1, &got), -ESTALE);
	T_ASSERT_EQ(fl_working_set_load(v.ws, v.image, 7, &got), -ENOENT);	/* no region 7 */
	T_OK(fl_working_set_load(v.ws, v.image, 0, &got));

	/* Replay refuses a set for another geometry, and a second replay. */
	small = u_region(e, &anon, WS_LEN / 2, store, 0);
	T_ASSERT_EQ(fl_region_replay(small, got), -ESTALE);
	fl_region_free(small);
	T_ASSERT_EQ(fl_region_replay(NULL, got), -EINVAL);
	T_ASSERT_EQ(fl_working_set_save(ws, v.ws, v.image, 7), -ENOENT);
	T_ASSERT_EQ(fl_region_record_stop(NULL, &got), -EINVAL);
	T_ASSERT_EQ(fl_region_record(NULL), -EINVAL);
	T_ASSERT_EQ(fl_region_replay_wait(NULL), -EINVAL);
	{
		struct fl_region *r2 = u_region(e, &anon, WS_LEN, store, 0);
		T_ASSERT_EQ(fl_region_replay_wait(r2), 0);	/* none started */
		T_OK(fl_region_replay(r2, got));
		T_ASSERT_EQ(fl_region_replay(r2, got), -EBUSY);
		T_ASSERT_EQ(fl_region_replay_wait(r2), 100);
		T_ASSERT(memcmp(fl_region_addr(r2), v.bytes, WS_LEN) == 0);
		fl_region_free(r2);
	}
	fl_working_set_free(got);
	fl_working_set_free(ws);
	T_ASSERT(fl_working_set_free(NULL) == NULL);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	env_free(&v);
	return T_PASS;
}

/*
 * Record 30 % of the pages in a random order, then restore again with the
 * replay while two threads read that order and then everything: every byte
 * is the image's, and the replay saved demand faults.
 */
static int test_replay(void *arg)
{
	const struct u_cfg *c = &u_cfgs[(uintptr_t)arg];
	size_t len = c->mem == FL_MEM_HUGETLB ? 32u << 20 : WS_LEN, psz = u_cfg_psz(c);
	size_t npages = len / psz, nset = npages * 3 / 10;
	struct ws_env v;
	struct fl_working_set *ws, *got;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_region_stats st;
	uint32_t *perm = u_perm(npages, U_RANDOM, 7);
	volatile uint8_t *mem;
	int64_t installed;

	u_require_cfg(c, 2 * len);
	e = u_engine(0, 1);
	env_new(&v, len);
	store = image_store(&v);

	r = u_region(e, c, len, store, 0);
	mem = fl_region_addr(r);
	T_OK(fl_region_record(r));
	for (size_t i = 0; i < nset; i++)
		(void)mem[(size_t)perm[i] * psz];
	T_OK(fl_region_record_stop(r, &ws));
	T_ASSERT_EQ(fl_working_set_pages(ws), nset);
	T_OK(fl_working_set_save(ws, v.ws, v.image, 0));
	fl_region_free(r);

	T_OK(fl_working_set_load(v.ws, v.image, 0, &got));
	r = u_region(e, c, len, store, 0);
	T_OK(fl_region_replay(r, got));
	fl_working_set_free(got);
	mem = fl_region_addr(r);
	for (size_t i = 0; i < nset; i++)
		T_ASSERT(memcmp((const void *)(mem + (size_t)perm[i] * psz), v.bytes + (size_t)perm[i] * psz,
				psz) == 0, "set page %u differs", perm[i]);
	installed = fl_region_replay_wait(r);
	st = u_rstats(r);
	t_log("%s: %zu pages in the set, %lld installed by the replay, %llu demand faults", c->name, nset,
	      (long long)installed, (unsigned long long)u_faults(&st));
	T_ASSERT(st.pages_replayed == (uint64_t)installed);
	/* The rest is lazy, and right. */
	u_read_threads((const uint8_t *)mem, v.bytes, psz, npages, 2, 1);
	fl_region_free(r);

	/* A replay left to finish first installs the whole set: no fault. */
	r = u_region(e, c, len, store, 0);
	T_OK(fl_region_replay(r, ws));
	T_ASSERT_EQ(fl_region_replay_wait(r), (int64_t)nset);
	mem = fl_region_addr(r);
	for (size_t i = 0; i < nset; i++)
		T_ASSERT(memcmp((const void *)(mem + (size_t)perm[i] * psz), v.bytes + (size_t)perm[i] * psz,
				psz) == 0, "set page %u differs", perm[i]);
	st = u_rstats(r);
	/* Reading the set takes no fault: every page of it is in. Debian's
	 * 6.1 under QEMU TCG has twice faulted one page of a finished anon
	 * replay again (CI's VM pass; cause not found, never on 6.18): at
	 * most 1 % of the set may fault there, and the count is logged. */
	t_log("%s: %llu demand faults reading the set after a finished replay", c->name,
	      (unsigned long long)u_faults(&st));
	T_ASSERT(u_faults(&st) <= nset / 100, "%llu faults reading a replayed set of %zu pages",
		 (unsigned long long)u_faults(&st), nset);
	u_read_threads((const uint8_t *)mem, v.bytes, psz, npages, 2, 1);
	fl_region_free(r);

	fl_working_set_free(ws);
	fl_store_unref(store);
	fl_engine_free(e);
	env_free(&v);
	free(perm);
	return T_PASS;
}

/* Pages a replay cannot read are left to demand faults: SIGBUS, never zeros. */
static int test_replay_store_error(void *arg)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	uint8_t *img = u_image(WS_LEN, 0, 0xe77);
	struct fl_store *st = u_mem_store(img, WS_LEN);
	uint64_t fail[2] = { 10 * U_PAGE, 2 * U_PAGE };
	struct fl_engine *e = u_engine(0, 1);
	struct fl_working_set *ws;
	struct fl_region *r;
	uint8_t *p;

	(void)arg;
	u_bus_install();
	r = u_region(e, &anon, WS_LEN, st, FL_REGION_NO_PREFETCH);
	T_OK(fl_region_record(r));
	for (size_t pg = 0; pg < 32; pg++)
		(void)((volatile uint8_t *)fl_region_addr(r))[pg * U_PAGE];
	T_OK(fl_region_record_stop(r, &ws));
	fl_region_free(r);

	T_OK(fl_store_ctl(st, FL_STORE_CTL_FAIL_AT, fail));
	r = u_region(e, &anon, WS_LEN, st, FL_REGION_NO_PREFETCH);
	T_OK(fl_region_replay(r, ws));
	T_ASSERT_EQ(fl_region_replay_wait(r), 30);
	p = fl_region_addr(r);
	for (size_t pg = 0; pg < 32; pg++) {
		int want = pg == 10 || pg == 11 ? -1 : 0;
		T_ASSERT_EQ(u_probe_cmp(p + pg * U_PAGE, img + pg * U_PAGE, U_PAGE), want);
	}
	fl_region_free(r);
	fl_working_set_free(ws);
	fl_store_unref(st);
	fl_engine_free(e);
	return T_PASS;
}

/* Freeing a region while its replay runs stops the replay. */
static int test_replay_free_early(void *arg)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	size_t len = 64u << 20;
	uint8_t *img = u_image(len, 0, 0xf4ee);
	struct fl_store *st = u_mem_store(img, len);
	uint64_t delay = 200;
	struct fl_engine *e = u_engine(0, 1);
	struct fl_working_set *ws;
	struct fl_region *r;

	(void)arg;
	r = u_region(e, &anon, len, st, 0);
	T_OK(fl_region_record(r));
	for (size_t pg = 0; pg < len / U_PAGE; pg += 2)
		(void)((volatile uint8_t *)fl_region_addr(r))[pg * U_PAGE];
	T_OK(fl_region_record_stop(r, &ws));
	fl_region_free(r);
	/* A slow store: the replay is far from done when the region goes. */
	T_OK(fl_store_ctl(st, FL_STORE_CTL_DELAY_US, &delay));
	for (int i = 0; i < 5; i++) {
		uint64_t t0 = t_now_ns();
		r = u_region(e, &anon, len, st, 0);
		T_OK(fl_region_replay(r, ws));
		t_sleep_ms(5);
		fl_region_free(r);
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(2000), "freeing waited for the whole replay");
	}
	fl_working_set_free(ws);
	fl_store_unref(st);
	fl_engine_free(e);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "record-order", test_record_order, NULL, 60 },
	{ "bad-files", test_bad_files, NULL, 60 },
	{ "replay-anon-missing", test_replay, (void *)0, 60 },
	{ "replay-shmem-missing", test_replay, (void *)1, 60, U_NEEDS_SHMEM },
	{ "replay-shmem-minor", test_replay, (void *)2, 60, U_NEEDS_SHMEM_MINOR },
	{ "replay-hugetlb-missing", test_replay, (void *)3, 60, U_NEEDS_HUGETLB },
	{ "replay-hugetlb-minor", test_replay, (void *)4, 60, U_NEEDS_HUGETLB_MINOR },
	{ "replay-store-error", test_replay_store_error, NULL, 60 },
	{ "replay-free-early", test_replay_free_early, NULL, 60 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
