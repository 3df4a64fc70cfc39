// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * End to end: far regions (resident_max a quarter of the region,
 * FL_REGION_WRITEBACK) over the far-memory Redis store and over a remote
 * store of a writable page server: random writes through memory, evictions
 * that write back, fl_region_flush(), then the store read back byte for
 * byte; and a remote store that was not granted writes is refused at
 * region creation.
 */
#include "rtest.h"

#define NPAGES 2048
#define LEN ((size_t)NPAGES * R_PAGE)

static void *srv_main(void *arg)
{
	fl_server_run(arg);
	return NULL;
}

/* Random writes to base (mirrored in want), flush, and the store holds want. */
static void exercise(struct fl_store *s)
{
	struct fl_engine *e = u_engine(0, 2);
	struct fl_region_opts o = u_ropts(&u_cfgs[0], LEN, s, FL_REGION_WRITEBACK);
	struct fl_region *r;
	struct fl_region_stats st;
	uint8_t *base, *want = calloc(1, LEN), *got = malloc(LEN);
	uint64_t x = 99;

	T_ASSERT(want && got);
	t_require(FL_FEATURE_BIT(FL_FEATURE_WP));
	o.resident_max = LEN / 4;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	for (unsigned i = 0; i < 6000; i++) {
		uint64_t p, off;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p = (x >> 33) % NPAGES;
		off = (x >> 13) % (R_PAGE - 8);
		memcpy(base + p * R_PAGE + off, &x, 8);
		memcpy(want + p * R_PAGE + off, &x, 8);
	}
	T_OK(fl_region_flush(r));
	st = u_rstats(r);
	t_log("resident %llu, evicted dirty %llu, written back %llu, errors %llu",
	      (unsigned long long)st.resident_pages, (unsigned long long)st.pages_evicted_dirty,
	      (unsigned long long)st.pages_written_back, (unsigned long long)st.writeback_errors);
	T_ASSERT(st.pages_evicted_dirty > 0, "nothing was evicted dirty");
	T_ASSERT_EQ(st.writeback_errors, 0);
	{
		struct fl_store_iov iov = { .offset = 0, .buf = got, .len = LEN };
		T_OK(fl_store_read(s, &iov, 1));
		if (iov.flags_out & FL_STORE_OUT_ZERO)
			memset(got, 0, LEN);
	}
	for (size_t p = 0; p < NPAGES; p++)
		T_ASSERT(memcmp(got + p * R_PAGE, want + p * R_PAGE, R_PAGE) == 0, "store page %zu differs", p);
	/* And the memory too, refaulting what was evicted. */
	T_ASSERT(memcmp(base, want, LEN) == 0);
	fl_region_free(r);
	fl_engine_free(e);
	free(want);
	free(got);
}

static int c_redis(void *arg)
{
	struct r_server srv;
	char url[128];
	struct fl_redis_opts o;
	struct fl_store *s;
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "e2e");
	o = r_opts(url, 0, t_scaled_ms(5000));
	T_OK(fl_store_redis_far_new(&o, LEN, FL_REDIS_FAR_ZERO_MISSING, &s));
	exercise(s);
	fl_store_unref(s);
	r_kill(&srv);
	return T_PASS;
}

/*
 * Redis killed under a far region's write-back: the flush fails, the pages
 * it could not write stay resident and dirty (counted in writeback_errors),
 * and once the server is back (append-only: what it acknowledged
 * survived) a flush writes them and the store holds every byte.
 */
static int c_redis_killed(void *arg)
{
	struct r_server srv;
	char url[128];
	struct fl_redis_opts ro;
	struct fl_store *s;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_region_opts o;
	struct fl_region_stats st;
	uint8_t *base, *want = calloc(1, LEN), *got = malloc(LEN);
	uint64_t x = 7;
	int ret;
	(void)arg;

	r_require();
	T_ASSERT(want && got);
	t_require(FL_FEATURE_BIT(FL_FEATURE_WP));
	r_start_ext(&srv, false, true, 0);
	r_url(url, sizeof(url), &srv, "e2e-killed");
	ro = r_opts(url, 0, t_scaled_ms(2000));
	T_OK(fl_store_redis_far_new(&ro, LEN, FL_REDIS_FAR_ZERO_MISSING, &s));
	e = u_engine(0, 2);
	o = u_ropts(&u_cfgs[0], LEN, s, FL_REGION_WRITEBACK);
	/* No eviction: every page stays in memory, so what the dead server
	 * holds is never needed to read them back. */
	o.resident_max = LEN;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	/* Every page in before the server dies: a page first touched with the
	 * store gone cannot be delivered and fails closed (SIGBUS), for good. */
	T_OK(fl_region_populate(r, 0, LEN));
	for (unsigned i = 0; i < 3000; i++) {
		uint64_t p, off;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p = (x >> 33) % NPAGES;
		off = (x >> 13) % (R_PAGE - 8);
		memcpy(base + p * R_PAGE + off, &x, 8);
		memcpy(want + p * R_PAGE + off, &x, 8);
	}
	r_kill(&srv);
	ret = fl_region_flush(r);
	T_ASSERT(ret < 0, "flush with the server killed: %d", ret);
	st = u_rstats(r);
	t_log("flush with the server dead: %s; dirty %llu, write-back errors %llu", strerror(-ret),
	      (unsigned long long)st.dirty_pages, (unsigned long long)st.writeback_errors);
	T_ASSERT(st.writeback_errors > 0);
	T_ASSERT(st.dirty_pages > 0, "pages that could not be written are still dirty");
	T_ASSERT_EQ(st.resident_pages, st.resident_peak);
	T_ASSERT(memcmp(base, want, LEN) == 0, "memory changed while the store was gone");
	r_restart(&srv);
	T_OK(fl_region_flush(r));
	st = u_rstats(r);
	T_ASSERT_EQ(st.dirty_pages, 0);
	{
		struct fl_store_iov iov = { .offset = 0, .buf = got, .len = LEN };
		T_OK(fl_store_read(s, &iov, 1));
		if (iov.flags_out & FL_STORE_OUT_ZERO)
			memset(got, 0, LEN);
	}
	for (size_t p = 0; p < NPAGES; p++)
		T_ASSERT(memcmp(got + p * R_PAGE, want + p * R_PAGE, R_PAGE) == 0, "store page %zu differs", p);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	r_kill(&srv);
	free(want);
	free(got);
	return T_PASS;
}

static int c_remote(void *arg)
{
	struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0", .flags = FL_SERVER_WRITABLE,
				     .log = t_log_cb, .log_level = u_log_level() };
	struct fl_remote_opts ro = { .sz = sizeof(ro), .log = t_log_cb, .log_level = u_log_level(),
				     .timeout_ms = t_scaled_ms(5000) };
	struct fl_store *file, *s;
	struct fl_server *srv;
	struct fl_engine *e;
	struct fl_region *r = NULL;
	struct fl_region_opts o;
	pthread_t tid;
	char addr[64];
	int fd = u_tmpfile(NULL, 0, NULL, 0);
	(void)arg;

	T_ASSERT(ftruncate(fd, (off_t)LEN) == 0);
	T_OK(fl_store_file_new(fd, 0, 0, &file));
	T_OK(fl_server_new_store(file, &so, &srv));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fl_server_port(srv));
	T_ASSERT(pthread_create(&tid, NULL, srv_main, srv) == 0);
	ro.addr = addr;
	/* Not asked for writes: a far region refuses it. */
	T_OK(fl_store_remote_new(&ro, &s));
	e = u_engine(0, 1);
	o = u_ropts(&u_cfgs[0], LEN, s, FL_REGION_WRITEBACK);
	o.resident_max = LEN / 4;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EROFS);
	fl_engine_free(e);
	fl_store_unref(s);
	ro.flags = FL_REMOTE_WRITABLE;
	T_OK(fl_store_remote_new(&ro, &s));
	exercise(s);
	fl_store_unref(s);
	fl_server_stop(srv);
	pthread_join(tid, NULL);
	fl_server_free(srv);
	fl_store_unref(file);
	close(fd);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "far-region-over-redis", c_redis, NULL, 120 },
	{ "far-region-over-remote", c_remote, NULL, 120 },
	{ "far-region-redis-killed", c_redis_killed, NULL, 120 },
};

int main(int argc, char **argv)
{
	return r_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
