// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis store against a single redis-server: push and lazy restore
 * (several threads, background fill), the store's read contract, values
 * corrupted or removed in Redis (the page gets SIGBUS, the others are
 * fine, never zeros), and the server killed mid-restore (restarted: the
 * restore completes; not restarted: SIGBUS after the timeout).
 */
#include "rtest.h"

static const size_t two_regions[] = { 4 * U_MIB + 3 * R_PAGE, U_MIB };

/* Push, then restore both regions with 4 threads each, every byte checked. */
static int t_push_restore(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct fl_image_region regs[4] = { [0].sz = sizeof(regs[0]) };	/* regs[0].sz: the stride */
	uint8_t id[FL_IMAGE_ID_LEN];
	char url[128];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "vm1");
	r_image_make(&im, "push", 2, two_regions, 11, NULL, 0);
	r_push(&im, url);

	/* Every page is a key, plus the two descriptions. */
	T_ASSERT_EQ(r_int(&srv, "DBSIZE"), (two_regions[0] + two_regions[1]) / R_PAGE + 2);
	{
		struct fl_redis_opts o = r_opts(url, 0, t_scaled_ms(5000));
		T_ASSERT_EQ(fl_redis_regions(&o, regs, 4, id), 2);
		T_ASSERT(memcmp(id, im.id, sizeof(id)) == 0);
		T_ASSERT_EQ(regs[0].length, two_regions[0]);
		T_ASSERT_EQ(regs[1].length, two_regions[1]);
		T_ASSERT(strcmp(regs[1].name, "region-1") == 0);
		T_ASSERT_EQ(regs[1].start, 0x20000000ull);
		T_ASSERT_EQ(regs[1].sz, sizeof(regs[1]));
		regs[0].sz = 0;
		T_ASSERT_EQ(fl_redis_regions(&o, regs, 4, id), -EINVAL);
		regs[0].sz = sizeof(regs[0]);
		T_ASSERT_EQ(fl_redis_regions(&o, NULL, 0, NULL), 2);
	}
	for (unsigned r = 0; r < 2; r++) {
		struct r_lazy l;
		struct fl_redis_stats rs;
		struct fl_region_stats st;

		r_lazy_open(&l, url, r, t_scaled_ms(5000), 2, 0);
		T_ASSERT_EQ(l.len, two_regions[r]);
		T_ASSERT(strcmp(fl_store_name(l.st), "redis") == 0);
		u_read_threads(l.base, im.expect[r], R_PAGE, l.len / R_PAGE, 4, 1);
		U_CHECK(l.base, im.expect[r], l.len, R_PAGE);
		rs = r_stats(l.st);
		st = u_rstats_settled(l.reg);
		r_log_stats("region", &rs);
		u_log_rstats("region", &st);
		T_ASSERT(!rs.cluster && rs.nodes == 1);
		T_ASSERT(rs.pages_read >= l.len / R_PAGE, "pages_read %llu", (unsigned long long)rs.pages_read);
		T_ASSERT_EQ(rs.bad_values, 0);
		T_ASSERT_EQ(rs.missing, 0);
		T_ASSERT_EQ(st.pages_poisoned, 0);
		T_ASSERT(st.pages_zero > 0, "zero pages resolved as zero pages");
		r_lazy_close(&l);
	}
	r_kill(&srv);
	return T_PASS;
}

/* The background filler reads the whole region through non-urgent reads. */
static int t_background(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct r_lazy l;
	static const size_t len[] = { 8 * U_MIB };
	uint64_t end;
	char url[128];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "bg");
	r_image_make(&im, "bg", 1, len, 5, NULL, 0);
	r_push(&im, url);
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, FL_REGION_BACKGROUND);
	end = t_deadline_ms(30000);
	while (fl_region_resolved_pages(l.reg) < l.len / R_PAGE && t_now_ns() < end)
		t_sleep_ms(10);
	T_ASSERT_EQ(fl_region_resolved_pages(l.reg), l.len / R_PAGE);
	U_CHECK(l.base, im.expect[0], l.len, R_PAGE);
	r_lazy_close(&l);
	r_kill(&srv);
	return T_PASS;
}

/* fl_store_read straight: ranges, zero ranges, bounds, ids. */
static int t_store_api(void *arg)
{
	struct r_server srv;
	struct r_image im, other;
	struct fl_store *st;
	struct fl_store_iov iov[3];
	struct fl_redis_opts o;
	static const size_t len[] = { 3 * U_MIB };
	uint8_t *buf = malloc(2 * U_MIB);
	char url[128], url2[128];
	int r;
	(void)arg;

	r_require();
	T_ASSERT(buf);
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "api");
	r_image_make(&im, "api", 1, len, 21, NULL, 0);
	r_push(&im, url);
	st = r_store(url, 0, t_scaled_ms(5000));
	T_ASSERT_EQ(fl_store_size(st), len[0]);

	/* A batch: a range across the 2 MiB chunk boundary, one zero page, the last page. */
	iov[0] = (struct fl_store_iov){ .offset = 2 * U_MIB - 8 * R_PAGE, .buf = buf, .len = 16 * R_PAGE,
					.flags_in = FL_STORE_IN_URGENT };
	iov[1] = (struct fl_store_iov){ .offset = 3 * R_PAGE, .buf = buf + U_MIB, .len = R_PAGE };
	iov[2] = (struct fl_store_iov){ .offset = len[0] - R_PAGE, .buf = buf + U_MIB + R_PAGE, .len = R_PAGE };
	memset(buf, 0xAA, 2 * U_MIB);
	T_OK(fl_store_read(st, iov, 3));
	T_ASSERT(memcmp(buf, im.expect[0] + iov[0].offset, iov[0].len) == 0);
	T_ASSERT(!(iov[0].flags_out & FL_STORE_OUT_ZERO));
	T_ASSERT(iov[1].flags_out & FL_STORE_OUT_ZERO, "a zero page reads as FL_STORE_OUT_ZERO");
	T_ASSERT(memcmp(buf + U_MIB + R_PAGE, im.expect[0] + iov[2].offset, R_PAGE) == 0);

	/* Beyond the end: -ERANGE, never zeros. */
	iov[0] = (struct fl_store_iov){ .offset = len[0], .buf = buf, .len = R_PAGE };
	T_ASSERT_EQ(fl_store_read(st, iov, 1), -ERANGE);
	/* Unaligned: -EINVAL. */
	iov[0] = (struct fl_store_iov){ .offset = 100, .buf = buf, .len = R_PAGE };
	T_ASSERT_EQ(fl_store_read(st, iov, 1), -EINVAL);
	/* Unknown ctl. */
	T_ASSERT_EQ(fl_store_ctl(st, 0x1234, NULL), -EOPNOTSUPP);
	{
		/* A remote store's op is refused, its arg untouched. */
		struct fl_remote_stats rst;
		memset(&rst, 0xa5, sizeof(rst));
		rst.sz = sizeof(rst);
		T_ASSERT_EQ(fl_store_ctl(st, FL_REMOTE_CTL_STATS, &rst), -EOPNOTSUPP);
		T_ASSERT_EQ(rst.requests, 0xa5a5a5a5a5a5a5a5ull);
	}
	{
		/* The stats struct follows faultline(7): sz 0 -EINVAL, a larger
		 * caller struct gets its tail zeroed and keeps its sz. */
		union {
			struct fl_redis_stats s;
			unsigned char b[sizeof(struct fl_redis_stats) + 16];
		} big;
		memset(&big, 0xee, sizeof(big));
		big.s.sz = 0;
		T_ASSERT_EQ(fl_store_ctl(st, FL_REDIS_CTL_STATS, &big), -EINVAL);
		big.s.sz = sizeof(big);
		T_OK(fl_store_ctl(st, FL_REDIS_CTL_STATS, &big));
		T_ASSERT_EQ(big.s.sz, sizeof(big));
		T_ASSERT(big.s.pages_read > 0 && big.s.commands > 0);
		for (size_t i = sizeof(big.s); i < sizeof(big); i++)
			T_ASSERT(big.b[i] == 0, "tail byte %zu not zeroed", i);
	}
	fl_store_unref(st);

	/* No such region, no such prefix. */
	o = r_opts(url, 1, t_scaled_ms(2000));
	T_ASSERT_EQ(fl_store_redis_new(&o, &st), -ENOENT);
	r_url(url2, sizeof(url2), &srv, "nothing-here");
	o = r_opts(url2, 0, t_scaled_ms(2000));
	T_ASSERT_EQ(fl_store_redis_new(&o, &st), -ENOENT);
	T_ASSERT_EQ(fl_redis_regions(&o, NULL, 0, NULL), -ENOENT);

	/* Pinned image ids: the pushed one works, another one is -ESTALE. */
	o = r_opts(url, 0, t_scaled_ms(2000));
	o.image_id = im.id;
	T_OK(fl_store_redis_new(&o, &st));
	fl_store_unref(st);
	r_image_make(&other, "api-other", 1, len, 22, NULL, 0);
	o.image_id = other.id;
	T_ASSERT_EQ(fl_store_redis_new(&o, &st), -ESTALE);

	/* Pushing another image under the prefix: new stores see it, the pinned old one still works. */
	r_push(&other, url);
	st = r_store(url, 0, t_scaled_ms(2000));
	iov[0] = (struct fl_store_iov){ .offset = 0, .buf = buf, .len = U_MIB };
	T_OK(fl_store_read(st, iov, 1));
	T_ASSERT(memcmp(buf, other.expect[0], U_MIB) == 0);
	fl_store_unref(st);
	o.image_id = im.id;
	r = fl_store_redis_new(&o, &st);
	T_ASSERT(r == 0, "pinned old image: %d", r);
	T_OK(fl_store_read(st, iov, 1));
	T_ASSERT(memcmp(buf, im.expect[0], U_MIB) == 0);
	fl_store_unref(st);

	/* A corrupt description. */
	freeReplyObject(r_cmd(&srv, "SETRANGE api:meta 20 garbage"));
	o = r_opts(url, 0, t_scaled_ms(2000));
	T_ASSERT_EQ(fl_store_redis_new(&o, &st), -EBADMSG);
	r_kill(&srv);
	free(buf);
	return T_PASS;
}

/* ---- corrupt and missing values ---------------------------------------- */

static void copy_value(const struct r_server *s, const char *from, const char *to)
{
	redisReply *v = r_cmd(s, "GET %s", from);
	redisReply *r;
	T_ASSERT(v->type == REDIS_REPLY_STRING, "GET %s", from);
	r = r_cmd(s, "SET %s %b", to, v->str, v->len);
	T_ASSERT(r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	freeReplyObject(v);
}

/* Modify a value: truncate to `keep` bytes (0: keep all) and xor one byte at `at` (-1: none). */
static void mangle_value(const struct r_server *s, const char *key, size_t keep, long at)
{
	redisReply *v = r_cmd(s, "GET %s", key);
	redisReply *r;
	char *buf;
	size_t len;

	T_ASSERT(v->type == REDIS_REPLY_STRING, "GET %s", key);
	len = keep ? keep : v->len;
	T_ASSERT(len <= v->len);
	buf = malloc(len);
	memcpy(buf, v->str, len);
	if (at >= 0)
		buf[at] ^= 0x40;
	r = r_cmd(s, "SET %s %b", key, buf, len);
	T_ASSERT(r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	freeReplyObject(v);
	free(buf);
}

/*
 * Break pages in every way: the bad ones get SIGBUS (never wrong bytes,
 * never zeros), every other page is delivered. Prefetch is on, so the
 * failed windows exercise the engine's retry of the faulting page alone.
 */
static int t_corrupt(void *arg)
{
	struct r_server srv;
	struct r_image im, other;
	struct r_lazy l;
	struct fl_redis_stats rs;
	static const size_t len[] = { 3 * U_MIB, U_MIB };
	const char *prefix = "bad";
	char url[128], url_other[128], key[256], key2[256];
	/* page -> what is done to it (all data pages: p % 7 != 3) */
	enum { BAD_CSUM = 11, BAD_HDR = 20, TRUNC = 30, TRUNC_HDR = 40, WRONG_PAGE = 50,
	       WRONG_REGION = 60, WRONG_IMAGE = 70, DELETED = 81, WRONG_TYPE = 90, ZERO_KIND = 100,
	       BAD_MAGIC = 600, EMPTY = 700 };
	static const unsigned bad[] = { BAD_CSUM, BAD_HDR, TRUNC, TRUNC_HDR, WRONG_PAGE, WRONG_REGION,
					WRONG_IMAGE, DELETED, WRONG_TYPE, ZERO_KIND, BAD_MAGIC, EMPTY };
	(void)arg;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		T_ASSERT(bad[i] % 7 != 3);
	r_require();
	u_bus_install();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, prefix);
	r_url(url_other, sizeof(url_other), &srv, "other");
	r_image_make(&im, "bad", 2, len, 31, NULL, 0);
	r_image_make(&other, "bad-other", 2, len, 32, NULL, 0);
	r_push(&im, url);
	r_push(&other, url_other);

#define KEY(page) (r_page_key(key, sizeof(key), prefix, im.id, 0, (page)), key)
	mangle_value(&srv, KEY(BAD_CSUM), 0, 56 + 1000);		/* a data byte */
	mangle_value(&srv, KEY(BAD_HDR), 0, 16);			/* the page number */
	mangle_value(&srv, KEY(TRUNC), 56 + 2048, -1);			/* half the page */
	mangle_value(&srv, KEY(TRUNC_HDR), 30, -1);			/* half the header */
	mangle_value(&srv, KEY(BAD_MAGIC), 0, 0);
	r_page_key(key2, sizeof(key2), prefix, im.id, 0, WRONG_PAGE + 1);
	copy_value(&srv, key2, KEY(WRONG_PAGE));			/* a valid value of the next page */
	r_page_key(key2, sizeof(key2), prefix, im.id, 1, WRONG_REGION);
	copy_value(&srv, key2, KEY(WRONG_REGION));			/* same page of region 1 */
	r_page_key(key2, sizeof(key2), "other", other.id, 0, WRONG_IMAGE);
	copy_value(&srv, key2, KEY(WRONG_IMAGE));			/* same page of another image */
	R_STATUS(&srv, "SET %s %b", KEY(EMPTY), "", (size_t)0);
	{
		redisReply *r = r_cmd(&srv, "DEL %s", KEY(DELETED));
		T_ASSERT(r->type == REDIS_REPLY_INTEGER && r->integer == 1);
		freeReplyObject(r);
		r = r_cmd(&srv, "DEL %s", KEY(WRONG_TYPE));
		freeReplyObject(r);
		r = r_cmd(&srv, "LPUSH %s x", KEY(WRONG_TYPE));
		freeReplyObject(r);
	}
	/* A zero page's value (page 3) under a data page's key: zeros must not come out. */
	r_page_key(key2, sizeof(key2), prefix, im.id, 0, 3);
	copy_value(&srv, key2, KEY(ZERO_KIND));
#undef KEY

	r_lazy_open(&l, url, 0, t_scaled_ms(3000), 2, 0);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int v = u_probe_cmp(l.base + bad[i] * R_PAGE, im.expect[0] + bad[i] * R_PAGE, R_PAGE);
		T_ASSERT(v == -1, "page %u: %s instead of SIGBUS", bad[i], v == 0 ? "read" : "wrong bytes");
	}
	/* Every other page is right; the bad ones stay poisoned. */
	for (size_t p = 0; p < l.len / R_PAGE; p++) {
		bool is_bad = false;
		int v;
		for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			is_bad |= bad[i] == p;
		v = u_probe_cmp(l.base + p * R_PAGE, im.expect[0] + p * R_PAGE, R_PAGE);
		T_ASSERT(v == (is_bad ? -1 : 0), "page %zu: %d", p, v);
	}
	rs = r_stats(l.st);
	r_log_stats("corrupt", &rs);
	T_ASSERT(rs.bad_values >= 9, "bad values %llu", (unsigned long long)rs.bad_values);
	T_ASSERT(rs.missing >= 2, "missing %llu", (unsigned long long)rs.missing);
	r_lazy_close(&l);
	r_kill(&srv);
	return T_PASS;
}

/* Pages absent from the image have no key: SIGBUS, not zeros. */
static int t_absent(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct r_lazy l;
	static const size_t len[] = { U_MIB };
	static const uint64_t absent[] = { 0, 17, 255 };
	char url[128];
	(void)arg;

	r_require();
	u_bus_install();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "absent");
	r_image_make(&im, "absent", 1, len, 41, absent, 3);
	r_push(&im, url);
	T_ASSERT_EQ(r_int(&srv, "DBSIZE"), len[0] / R_PAGE - 3 + 2);
	r_lazy_open(&l, url, 0, t_scaled_ms(3000), 1, 0);
	for (size_t p = 0; p < l.len / R_PAGE; p++) {
		int v = u_probe_cmp(l.base + p * R_PAGE, im.expect[0] + p * R_PAGE, R_PAGE);
		T_ASSERT(v == (r_page_absent(absent, 3, p) ? -1 : 0), "page %zu: %d", p, v);
	}
	r_lazy_close(&l);
	r_kill(&srv);
	return T_PASS;
}

/* ---- the server goes away ------------------------------------------------ */

struct toucher {
	pthread_t tid;
	const uint8_t *base, *expect;
	size_t first, count;
	long bad_page;
	uint64_t done_ns;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	t->bad_page = -1;
	for (size_t p = t->first; p < t->first + t->count; p++) {
		if (memcmp(t->base + p * R_PAGE, t->expect + p * R_PAGE, R_PAGE)) {
			t->bad_page = (long)p;
			break;
		}
	}
	t->done_ns = t_now_ns();
	return NULL;
}

/* Killed with SIGKILL while threads fault, restarted a second later: everything arrives. */
static int t_kill_restart(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct r_lazy l;
	struct toucher t[3];
	struct fl_redis_stats rs;
	static const size_t len[] = { 6 * U_MIB };
	size_t np = len[0] / R_PAGE;
	uint64_t restarted;
	char url[128];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "restart");
	r_image_make(&im, "restart", 1, len, 51, NULL, 0);
	r_push(&im, url);
	R_STATUS(&srv, "SAVE");			/* the restarted server loads this */
	r_lazy_open(&l, url, 0, t_scaled_ms(15000), 2, 0);
	U_CHECK(l.base, im.expect[0], len[0] / 4, R_PAGE);	/* the first quarter, while up */

	r_kill(&srv);
	/* Readers fault on the rest while the server is down (server restarts from the main thread:
	 * its PR_SET_PDEATHSIG follows the thread that forks it). */
	/* (the second half: beyond the prefetch window of the first quarter's reads) */
	for (unsigned i = 0; i < 3; i++) {
		size_t first = np / 2 + i * (np / 2) / 3;
		t[i] = (struct toucher){ .base = l.base, .expect = im.expect[0], .first = first,
					 .count = i == 2 ? np - first : (np / 2) / 3 };
		T_ASSERT(pthread_create(&t[i].tid, NULL, toucher_main, &t[i]) == 0);
	}
	t_sleep_ms(t_scaled_ms(1000));
	T_ASSERT(fl_region_resolved_pages(l.reg) <= np / 2, "pages resolved while the server was down");
	restarted = t_now_ns();
	r_restart(&srv);
	for (unsigned i = 0; i < 3; i++) {
		pthread_join(t[i].tid, NULL);
		T_ASSERT(t[i].bad_page < 0, "thread %u: page %ld wrong after the restart", i, t[i].bad_page);
		T_ASSERT(t[i].done_ns >= restarted, "thread %u finished while the server was down", i);
	}
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	rs = r_stats(l.st);
	r_log_stats("restart", &rs);
	T_ASSERT(rs.connect_errors + rs.io_errors > 0);
	T_ASSERT_EQ(rs.timeouts, 0);
	T_ASSERT_EQ(u_rstats_settled(l.reg).pages_poisoned, 0);
	r_lazy_close(&l);
	r_kill(&srv);
	return T_PASS;
}

/* Killed for good: faults get SIGBUS after the bounded retry, never zeros; later ones fail fast. */
static int t_kill_no_restart(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct r_lazy l;
	struct fl_redis_stats rs;
	static const size_t len[] = { 2 * U_MIB };
	const unsigned timeout_ms = t_scaled_ms(1000);
	uint64_t t0, first_ms, second_ms;
	char url[128];
	int v;
	(void)arg;

	r_require();
	u_bus_install();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "dead");
	r_image_make(&im, "dead", 1, len, 61, NULL, 0);
	r_push(&im, url);
	r_lazy_open(&l, url, 0, timeout_ms, 1, FL_REGION_NO_PREFETCH);
	U_CHECK(l.base, im.expect[0], 64 * R_PAGE, R_PAGE);
	r_kill(&srv);

	t0 = t_now_ns();
	v = u_probe_cmp(l.base + 100 * R_PAGE, im.expect[0] + 100 * R_PAGE, R_PAGE);
	first_ms = (t_now_ns() - t0) / 1000000;
	T_ASSERT(v == -1, "page 100 after the kill: %d (not SIGBUS)", v);
	t_log("first fault after the kill: SIGBUS after %llu ms", (unsigned long long)first_ms);
	T_ASSERT(first_ms >= timeout_ms - 100, "gave up after %llu ms, before the timeout", (unsigned long long)first_ms);
	T_ASSERT(first_ms < 3 * timeout_ms + t_scaled_ms(2000), "took %llu ms", (unsigned long long)first_ms);

	t0 = t_now_ns();
	v = u_probe_cmp(l.base + 200 * R_PAGE, im.expect[0] + 200 * R_PAGE, R_PAGE);
	second_ms = (t_now_ns() - t0) / 1000000;
	T_ASSERT(v == -1, "page 200 after the kill: %d (not SIGBUS)", v);
	t_log("next fault: SIGBUS after %llu ms", (unsigned long long)second_ms);
	T_ASSERT(second_ms < timeout_ms, "a known-dead server still costs %llu ms", (unsigned long long)second_ms);
	/* Pages read before the kill are intact. */
	U_CHECK(l.base, im.expect[0], 64 * R_PAGE, R_PAGE);
	rs = r_stats(l.st);
	r_log_stats("dead", &rs);
	T_ASSERT(rs.timeouts >= 2);
	r_lazy_close(&l);
	return T_PASS;
}

/* The CLI: faultline image push IMAGE redis://... (through cmd_image_push). */
static int run_push_cli(const char *a1, const char *a2, const char *a3, const char *a4)
{
	const char *bin = getenv("FL_REDIS_PUSH_CLI");
	int status;
	pid_t pid;

	if (!bin)
		t_skip_resource("FL_REDIS_PUSH_CLI not set (run through meson test)");
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		execl(bin, bin, "push", a1, a2, a3, a4, (char *)NULL);
		_exit(99);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int t_cli_push(void *arg)
{
	struct r_server srv;
	struct r_image im;
	struct r_lazy l;
	static const size_t len[] = { 2 * U_MIB, 64 * R_PAGE };
	char url[128];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "cli");
	r_image_make(&im, "cli", 2, len, 71, NULL, 0);
	T_ASSERT_EQ(run_push_cli(im.path, url, NULL, NULL), 0);
	for (unsigned r = 0; r < 2; r++) {
		r_lazy_open(&l, url, r, t_scaled_ms(5000), 1, 0);
		U_CHECK(l.base, im.expect[r], len[r], R_PAGE);
		r_lazy_close(&l);
	}
	T_ASSERT_EQ(run_push_cli("--quiet", "--timeout", "2000", NULL), 2);	/* no arguments left */
	T_ASSERT_EQ(run_push_cli(im.path, "http://x/y", NULL, NULL), 2);
	T_ASSERT_EQ(run_push_cli(im.path, "redis://127.0.0.1:1/x", "--timeout", "300"), 1);
	T_ASSERT_EQ(run_push_cli("/nonexistent.img", url, NULL, NULL), 1);
	T_ASSERT_EQ(run_push_cli("--help", NULL, NULL, NULL), 0);
	r_kill(&srv);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "push-restore", t_push_restore, NULL, 120 },
	{ "background-fill", t_background, NULL, 120 },
	{ "store-api", t_store_api, NULL, 60 },
	{ "corrupt-values", t_corrupt, NULL, 120 },
	{ "absent-pages", t_absent, NULL, 60 },
	{ "kill-restart", t_kill_restart, NULL, 120 },
	{ "kill-no-restart", t_kill_no_restart, NULL, 60 },
	{ "cli-push", t_cli_push, NULL, 60 },
};

int main(int argc, char **argv)
{
	return r_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
