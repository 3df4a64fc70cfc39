// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page server and the remote store end to end: lazy regions restored
 * from a server over loopback, byte for byte, by demand faults from several
 * threads, prefetch and background fill; the urgent path under a throttled
 * background stream; the client limit; a server killed and restarted (the
 * client reconnects and completes), killed for good (SIGBUS after the
 * timeout, never zeros), or restarted with another image (refused).
 */
#include "net-util.h"
#include "fl-config.h"

#define REGION_MIB 8

/* ---- basic restores ------------------------------------------------------------ */

static int t_restore(void *arg)
{
	const struct u_cfg *cfg = arg;
	size_t len = REGION_MIB * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_server_stats ss = { .sz = sizeof(ss) };
	struct fl_remote_stats rst;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *expect;

	u_require_cfg(cfg, len);
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 2, len, 7, SIZE_MAX);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 1);
	st = n_remote(&ro);
	T_ASSERT_EQ(fl_store_size(st), len);
	T_ASSERT(strcmp(fl_store_name(st), "remote") == 0);
	e = u_engine(0, 1);
	r = u_region(e, cfg, len, st, 0);
	expect = n_expect(len, 8);
	U_CHECK(fl_region_addr(r), expect, len, U_PAGE);
	fl_region_free(r);
	fl_engine_free(e);

	T_OK(fl_server_stats(s.srv, &ss));
	rst = n_rstats(st);
	n_log_rstats("client", st);
	t_log("server: requests %llu, data pages %llu, zero pages %llu, bytes %llu",
	      (unsigned long long)ss.requests, (unsigned long long)ss.pages_data,
	      (unsigned long long)ss.pages_zero, (unsigned long long)ss.bytes_sent);
	/* Zero pages travel as a kind, without their bytes: every byte
	 * received is a data page's. (Not "fewer bytes than the region":
	 * an anonymous region's 2 MiB huge fills read whole chunks, and the
	 * store's read-ahead may have fetched some of them already.) */
	T_ASSERT(ss.pages_zero > 0);
	T_ASSERT_EQ(rst.bytes_received, ss.pages_data * U_PAGE);
	T_ASSERT(rst.requests_urgent > 0);
	T_ASSERT_EQ(rst.bad_responses, 0);
	T_ASSERT_EQ(rst.reconnects, 0);
	fl_store_unref(st);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

/* fl_store_read straight on the remote store: sizes, zero flags, splitting, errors. */
static int t_store_read(void *arg)
{
	size_t len = 8 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_store_iov iov[3];
	uint8_t *expect = n_expect(len, 3), *buf = malloc(len);
	size_t absent_from = len / U_PAGE - 16;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 3, absent_from);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);

	/* A large read (more pages than one READ carries) in one iov. */
	memset(buf, 0xee, len);
	iov[0] = (struct fl_store_iov){ .offset = 0, .buf = buf, .len = absent_from * U_PAGE };
	T_OK(fl_store_read(st, iov, 1));
	T_ASSERT(memcmp(buf, expect, absent_from * U_PAGE) == 0);
	/* A batch: data, an all-zero run (flagged), and a single page. */
	memset(buf, 0xee, len);
	iov[0] = (struct fl_store_iov){ .offset = 0, .buf = buf, .len = 16 * U_PAGE };
	iov[1] = (struct fl_store_iov){ .offset = 7 * 64 * U_PAGE, .buf = buf + 16 * U_PAGE, .len = 64 * U_PAGE,
					.flags_in = FL_STORE_IN_URGENT };
	iov[2] = (struct fl_store_iov){ .offset = 100 * U_PAGE, .buf = buf + 80 * U_PAGE, .len = U_PAGE };
	T_OK(fl_store_read(st, iov, 3));
	T_ASSERT(memcmp(buf, expect, 16 * U_PAGE) == 0);
	T_ASSERT(iov[1].flags_out & FL_STORE_OUT_ZERO);
	T_ASSERT(!(iov[0].flags_out & FL_STORE_OUT_ZERO));
	T_ASSERT(memcmp(buf + 80 * U_PAGE, expect + 100 * U_PAGE, U_PAGE) == 0);
	/* A batch of more requests than a connection keeps in flight. */
	{
		struct fl_store_iov many[100];
		for (unsigned i = 0; i < 100; i++)
			many[i] = (struct fl_store_iov){ .offset = (size_t)(i * 17 % 1900) * U_PAGE,
							 .buf = buf + (size_t)i * U_PAGE, .len = U_PAGE,
							 .flags_in = i == 50 ? FL_STORE_IN_URGENT : 0 };
		memset(buf, 0xee, 100 * U_PAGE);
		T_OK(fl_store_read(st, many, 100));
		for (unsigned i = 0; i < 100; i++)
			T_ASSERT(memcmp(buf + (size_t)i * U_PAGE, expect + many[i].offset, U_PAGE) == 0, "iov %u", i);
	}
	/* Pages in no image of the chain: -ENOENT, never zeros. */
	iov[0] = (struct fl_store_iov){ .offset = (absent_from - 1) * U_PAGE, .buf = buf, .len = 4 * U_PAGE };
	T_ASSERT_EQ(fl_store_read(st, iov, 1), -ENOENT);
	T_ASSERT_EQ(iov[0].result, -ENOENT);
	/* Beyond the end, and unaligned. */
	iov[0] = (struct fl_store_iov){ .offset = len, .buf = buf, .len = U_PAGE };
	T_ASSERT_EQ(fl_store_read(st, iov, 1), -ERANGE);
	iov[0] = (struct fl_store_iov){ .offset = 100, .buf = buf, .len = U_PAGE };
	T_ASSERT_EQ(fl_store_read(st, iov, 1), -EINVAL);
	/* The store still works after request errors. */
	iov[0] = (struct fl_store_iov){ .offset = U_PAGE, .buf = buf, .len = U_PAGE };
	T_OK(fl_store_read(st, iov, 1));
	T_ASSERT(memcmp(buf, expect + U_PAGE, U_PAGE) == 0);
	T_ASSERT_EQ(n_rstats(st).reconnects, 0);
	T_ASSERT_EQ(fl_store_ctl(st, 0x7777, NULL), -EOPNOTSUPP);
	{
		/* Another store's op is refused, not read as ours (FL_REDIS_CTL_STATS
		 * once had FL_REMOTE_CTL_STATS's number). */
		struct fl_redis_stats rst;
		memset(&rst, 0xa5, sizeof(rst));
		rst.sz = sizeof(rst);
		T_ASSERT_EQ(fl_store_ctl(st, FL_REDIS_CTL_STATS, &rst), -EOPNOTSUPP);
		T_ASSERT_EQ(rst.commands, 0xa5a5a5a5a5a5a5a5ull);
	}
	fl_store_unref(st);
	n_server_stop(&s);
	free(buf);
	t_rmtree(dir);
	return T_PASS;
}

/* Sequential bulk reads are read ahead; the read-ahead survives jumps and drops. */
static int t_readahead(void *arg)
{
	size_t len = 32 * N_MIB, run = 2 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_remote_stats rst;
	struct fl_store *st;
	uint8_t *expect = n_expect(len, 6), *buf = malloc(run);

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 6, SIZE_MAX);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);
	for (int pass = 0; pass < 3; pass++) {
		for (size_t off = 0; off < len; off += run) {
			struct fl_store_iov iov = { .offset = off, .buf = buf, .len = run };
			/* pass 1: drop the connections now and then; pass 2: skip runs */
			if (pass == 1 && off % (6 * run) == 0)
				T_OK(fl_store_ctl(st, FL_REMOTE_CTL_DROP, NULL));
			if (pass == 2 && off % (3 * run) == run)
				continue;
			memset(buf, 0x77, run);
			T_OK(fl_store_read(st, &iov, 1));
			T_ASSERT(memcmp(buf, expect + off, run) == 0, "pass %d, run at %zu", pass, off);
		}
	}
	rst = n_rstats(st);
	n_log_rstats("client", st);
	t_log("read-ahead: %llu issued, %llu used", (unsigned long long)rst.readahead,
	      (unsigned long long)rst.readahead_hits);
	T_ASSERT(rst.readahead_hits > 0 && rst.readahead_hits <= rst.readahead);
	fl_store_unref(st);
	n_server_stop(&s);
	free(buf);
	t_rmtree(dir);
	return T_PASS;
}

static int t_errors(void *arg)
{
	size_t len = N_MIB;
	char dir[64], path[128], addr[64];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_server_opts so = { .sz = sizeof(so) };
	struct fl_server *srv;
	struct fl_store *st = NULL;
	int port;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 2, len, 1, SIZE_MAX);
	n_server_start(&s, path, NULL);
	port = s.port;
	/* no such region */
	ro = n_ropts(s.addr, 2);
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -ENOENT);
	/* bad options */
	ro = n_ropts("127.0.0.1", 0);
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -EINVAL);
	ro = n_ropts("127.0.0.1:0", 0);
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -EINVAL);
	ro = n_ropts("::1:80", 0);
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -EINVAL);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "x";
	ro.psk_key_hex = "abcd";	/* too short to be a key */
	/* (a build without TLS refuses any TLS first: tls/disabled in net-tls) */
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), FL_HAVE_TLS ? -EINVAL : -EOPNOTSUPP);
	/* the port is taken */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	so.listen = addr;
	T_ASSERT_EQ(fl_server_new(s.img, &so, &srv), -EADDRINUSE);
	so.listen = "nonsense";
	T_ASSERT_EQ(fl_server_new(s.img, &so, &srv), -EINVAL);
	so.listen = "127.0.0.1:0";
	so.tls = FL_TLS_X509;
	so.cert_file = "/nonexistent/cert.pem";
	so.key_file = "/nonexistent/key.pem";
	T_ASSERT_EQ(fl_server_new(s.img, &so, &srv), FL_HAVE_TLS ? -ENOENT : -EOPNOTSUPP);
	so.tls = FL_TLS_PSK;
	T_ASSERT_EQ(fl_server_new(s.img, &so, &srv), FL_HAVE_TLS ? -EINVAL : -EOPNOTSUPP);
	n_server_stop(&s);
	/* nobody listens any more */
	ro = n_ropts(addr, 0);
	ro.timeout_ms = t_scaled_ms(500);
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -ECONNREFUSED);
	T_ASSERT(fl_server_free(NULL) == NULL);
	t_rmtree(dir);
	return T_PASS;
}

/* ---- concurrency ------------------------------------------------------------------ */

static int t_threads(void *arg)
{
	size_t len = 32 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *expect;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 11, SIZE_MAX);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);
	e = u_engine(0, 2);
	r = u_region(e, &n_anon, len, st, 0);
	expect = n_expect(len, 11);
	/* forward, backward and random orders at once, twice over */
	u_read_threads(fl_region_addr(r), expect, U_PAGE, len / U_PAGE, 6, 2);
	n_log_rstats("client", st);
	T_ASSERT_EQ(u_rstats_settled(r).pages_poisoned, 0);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(st);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

static int t_background(void *arg)
{
	size_t len = 32 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_region_stats rs;
	uint8_t *expect;
	uint64_t end;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 5, SIZE_MAX);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);
	e = u_engine(0, 1);
	r = u_region(e, &n_anon, len, st, FL_REGION_BACKGROUND);
	end = t_deadline_ms(60000);
	while (fl_region_resolved_pages(r) < len / U_PAGE && t_now_ns() < end)
		t_sleep_ms(5);
	rs = u_rstats(r);
	u_log_rstats("background", &rs);
	T_ASSERT_EQ(fl_region_resolved_pages(r), len / U_PAGE);
	T_ASSERT(rs.pages_background > 0);
	T_ASSERT_EQ(u_faults(&rs), 0);
	expect = n_expect(len, 5);
	U_CHECK(fl_region_addr(r), expect, len, U_PAGE);
	T_ASSERT_EQ(u_rstats(r).pages_poisoned, 0);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(st);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

/* Connections dropped over and over while threads restore: every byte right. */
struct dropper {
	struct fl_store *st;
	_Atomic bool stop;
	unsigned drops;
};

static void *drop_main(void *arg)
{
	struct dropper *d = arg;
	while (!atomic_load(&d->stop)) {
		fl_store_ctl(d->st, FL_REMOTE_CTL_DROP, NULL);
		d->drops++;
		/* A slow machine needs longer between drops to make progress. */
		t_sleep_ms(t_scaled_ms(3));
	}
	return NULL;
}

static int t_drops(void *arg)
{
	size_t len = 32 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r, *rb;
	struct dropper d = { 0 };
	pthread_t tid;
	uint8_t *expect;
	uint64_t end;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 13, SIZE_MAX);
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);
	e = u_engine(0, 2);
	r = u_region(e, &n_anon, len, st, 0);
	/* a second region on the same store keeps the bulk connection busy */
	rb = u_region(e, &n_anon, len, st, FL_REGION_BACKGROUND);
	d.st = st;
	T_ASSERT(pthread_create(&tid, NULL, drop_main, &d) == 0);
	expect = n_expect(len, 13);
	u_read_threads(fl_region_addr(r), expect, U_PAGE, len / U_PAGE, 4, 1);
	end = t_deadline_ms(60000);
	while (fl_region_resolved_pages(rb) < len / U_PAGE && t_now_ns() < end)
		t_sleep_ms(5);
	atomic_store(&d.stop, true);
	pthread_join(tid, NULL);
	n_log_rstats("client", st);
	t_log("%u drops", d.drops);
	U_CHECK(fl_region_addr(rb), expect, len, U_PAGE);
	T_ASSERT(n_rstats(st).reconnects > 0);
	T_ASSERT_EQ(u_rstats(r).pages_poisoned, 0);
	T_ASSERT_EQ(u_rstats(rb).pages_poisoned, 0);
	fl_region_free(r);
	fl_region_free(rb);
	fl_engine_free(e);
	fl_store_unref(st);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

/* ---- the urgent path -------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * Demand-fault latency (p99 over `n` faults at random pages of the second
 * half of the region, `pause_ms` apart) while the region is
 * background-filled.
 */
static uint64_t demand_p99(struct fl_region *r, const uint8_t *expect, unsigned n, unsigned seed,
			   unsigned pause_ms)
{
	const uint8_t *base = fl_region_addr(r);
	size_t npages = fl_region_length(r) / U_PAGE;
	uint64_t *lat = calloc(n, sizeof(*lat)), p99;

	for (unsigned i = 0; i < n; i++) {
		size_t p = npages / 2 + (size_t)rand_r(&seed) % (npages / 2);
		uint64_t t0 = t_now_ns();
		volatile uint8_t v = base[p * U_PAGE + 8];
		lat[i] = t_now_ns() - t0;
		(void)v;
		T_ASSERT(memcmp(base + p * U_PAGE, expect + p * U_PAGE, U_PAGE) == 0, "page %zu", p);
		t_sleep_ms(pause_ms);
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	p99 = lat[n * 99 / 100];
	free(lat);
	return p99;
}

static int t_urgent(void *arg)
{
	size_t len = 128 * N_MIB, npages = len / U_PAGE;
	/*
	 * Bulk: 16 MiB/s, 125 ms per 2 MiB batch, on a machine as fast as
	 * ours. On a slower one (FAULTLINE_TIMEOUT_SCALE) a demand fault
	 * is slower by about the scale, so the batch is made longer by the
	 * scale (the rate lower) and the faults are paced by the scale too:
	 * the stream moves the same number of pages during the measurement
	 * and a demand fault is still a fraction of a batch, which it only
	 * stays if it does not queue behind one.
	 */
	const uint64_t rate = (uint64_t)((double)(16ull << 20) / t_timeout_scale());
	const unsigned pause_ms = t_scaled_ms(2);
	char dir[64], path[128];
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .bulk_rate = rate };
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *expect;
	uint64_t base_p99, p99, one_p99, t0, t1, res0, res1;
	double batch_ns;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 21, SIZE_MAX);
	expect = n_expect(len, 21);
	n_server_start(&s, path, &so);
	ro = n_ropts(s.addr, 0);
	st = n_remote(&ro);
	e = u_engine(0, 1);

	/* Baseline: demand faults with nothing else going on. */
	r = u_region(e, &n_anon, len, st, FL_REGION_NO_PREFETCH);
	demand_p99(r, expect, 10, 7, 2);	/* warm up: buffers, connections */
	base_p99 = demand_p99(r, expect, 100, 1, 2);
	fl_region_free(r);

	/* The same under a background stream throttled to `rate`. */
	r = u_region(e, &n_anon, len, st, FL_REGION_NO_PREFETCH | FL_REGION_BACKGROUND);
	while (fl_region_resolved_pages(r) < 1024)
		t_sleep_ms(1);
	t0 = t_now_ns();
	res0 = fl_region_resolved_pages(r);
	p99 = demand_p99(r, expect, 200, 2, pause_ms);
	t1 = t_now_ns();
	res1 = fl_region_resolved_pages(r);
	T_ASSERT(res1 < npages, "the background fill ended before the measurement did");
	T_ASSERT(res1 - res0 > 200 + 2 * 512, "the background fill stalled (%llu pages)",
		 (unsigned long long)(res1 - res0));
	/* The batch time, measured: how long the stream takes per 2 MiB. */
	batch_ns = (double)(t1 - t0) / ((double)(res1 - res0 - 200) * U_PAGE / (2.0 * N_MIB));
	fl_region_free(r);
	n_log_rstats("client", st);
	fl_store_unref(st);

	/* For contrast (not asserted): one connection for everything. */
	ro.connections = 1;
	st = n_remote(&ro);
	r = u_region(e, &n_anon, len, st, FL_REGION_NO_PREFETCH | FL_REGION_BACKGROUND);
	while (fl_region_resolved_pages(r) < 1024)
		t_sleep_ms(1);
	one_p99 = demand_p99(r, expect, 60, 3, pause_ms);
	fl_region_free(r);
	fl_store_unref(st);

	t_log("demand p99: %.0f us alone, %.0f us under background (2 MiB batch every %.1f ms); "
	      "%.0f us with one shared connection", base_p99 / 1e3, p99 / 1e3, batch_ns / 1e6, one_p99 / 1e3);
	/* A demand fault never waits behind a background batch. */
	T_ASSERT(p99 * 4 < batch_ns, "demand p99 %.0f us vs batch %.0f us", p99 / 1e3, batch_ns / 1e3);
	fl_engine_free(e);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

/* ---- the client limit ------------------------------------------------------------- */

static int t_max_clients(void *arg)
{
	char dir[64], path[128];
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .max_clients = 2 };
	struct fl_server_stats ss = { .sz = sizeof(ss) };
	struct fl_remote_opts ro;
	struct fl_store *a, *b, *c = NULL;
	struct fl_store_iov iov;
	uint8_t page[4096];
	uint64_t end;
	int r;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, N_MIB, 2, SIZE_MAX);
	n_server_start(&s, path, &so);
	ro = n_ropts(s.addr, 0);
	ro.timeout_ms = t_scaled_ms(1000);
	a = n_remote(&ro);
	b = n_remote(&ro);
	/* Each client's second (bulk) connection is the same client. */
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page) };
	T_OK(fl_store_read(a, &iov, 1));
	T_OK(fl_store_read(b, &iov, 1));
	T_ASSERT_EQ(fl_store_remote_new(&ro, &c), -EBUSY);
	T_OK(fl_server_stats(s.srv, &ss));
	T_ASSERT_EQ(ss.clients, 2);
	T_ASSERT(ss.refused >= 1);
	/* A slot frees when a client leaves. */
	fl_store_unref(a);
	end = t_deadline_ms(3000);
	do {
		r = fl_store_remote_new(&ro, &c);
		if (r == -EBUSY)
			t_sleep_ms(10);
	} while (r == -EBUSY && t_now_ns() < end);
	T_OK(r);
	T_OK(fl_store_read(c, &iov, 1));
	fl_store_unref(b);
	fl_store_unref(c);
	n_server_stop(&s);
	t_rmtree(dir);
	return T_PASS;
}

/* ---- servers that die ----------------------------------------------------------------- */

struct restarter {
	char path[128], listen[64];
	unsigned delay_ms;
	pid_t pid;
};

static void *restart_main(void *arg)
{
	struct restarter *rs = arg;
	int port;
	t_sleep_ms(rs->delay_ms);
	rs->pid = n_spawn_server(rs->path, rs->listen, 0, &port);
	return NULL;
}

/* Killed mid-restore and restarted on its port: the client reconnects and completes. */
static int t_server_restart(void *arg)
{
	size_t len = 32 * N_MIB, npages = len / U_PAGE;
	char dir[64];
	struct restarter rs = { .delay_ms = 300 };
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r, *rb;
	pthread_t tid;
	uint8_t *expect, *base;
	uint64_t end;
	pid_t pid;
	int port;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(rs.path, sizeof(rs.path), "%s/img", dir);
	n_write_image(rs.path, 1, len, 17, SIZE_MAX);
	expect = n_expect(len, 17);
	pid = n_spawn_server(rs.path, "127.0.0.1:0", 16ull << 20, &port);
	snprintf(rs.listen, sizeof(rs.listen), "127.0.0.1:%d", port);
	ro = n_ropts(rs.listen, 0);
	ro.timeout_ms = t_scaled_ms(10000);
	st = n_remote(&ro);
	e = u_engine(0, 1);
	r = u_region(e, &n_anon, len, st, 0);
	rb = u_region(e, &n_anon, len, st, FL_REGION_BACKGROUND);	/* slow: 16 MiB/s */
	base = fl_region_addr(r);
	U_CHECK(base, expect, len / 4, U_PAGE);
	T_ASSERT(fl_region_resolved_pages(rb) < npages);
	n_kill(pid);
	T_ASSERT(pthread_create(&tid, NULL, restart_main, &rs) == 0);
	/* Faults now wait for the new server, then complete. */
	U_CHECK(base + len / 4, expect + len / 4, len - len / 4, U_PAGE);
	pthread_join(tid, NULL);
	end = t_deadline_ms(60000);
	while (fl_region_resolved_pages(rb) < npages && t_now_ns() < end)
		t_sleep_ms(5);
	U_CHECK(fl_region_addr(rb), expect, len, U_PAGE);
	n_log_rstats("client", st);
	T_ASSERT(n_rstats(st).reconnects >= 1);
	T_ASSERT_EQ(u_rstats(r).pages_poisoned, 0);
	T_ASSERT_EQ(u_rstats(rb).pages_poisoned, 0);
	fl_region_free(r);
	fl_region_free(rb);
	fl_engine_free(e);
	fl_store_unref(st);
	n_kill(rs.pid);
	t_rmtree(dir);
	return T_PASS;
}

/* Killed for good: touched pages get SIGBUS once timeout_ms has passed, never zeros. */
static int t_server_killed(void *arg)
{
	size_t len = 8 * N_MIB, npages = len / U_PAGE;
	const unsigned timeout_ms = t_scaled_ms(1000);
	char dir[64], path[128], addr[64];
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	uint8_t *expect, *base;
	uint64_t t0, first_ns, second_ns;
	pid_t pid;
	int port;

	(void)arg;
	u_bus_install();
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 19, SIZE_MAX);
	expect = n_expect(len, 19);
	pid = n_spawn_server(path, "127.0.0.1:0", 0, &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ro = n_ropts(addr, 0);
	ro.timeout_ms = timeout_ms;
	st = n_remote(&ro);
	e = u_engine(0, 1);
	r = u_region(e, &n_anon, len, st, 0);
	base = fl_region_addr(r);
	U_CHECK(base, expect, len / 8, U_PAGE);
	n_kill(pid);

	t0 = t_now_ns();
	T_ASSERT_EQ(u_probe_cmp(base + len / 2, expect + len / 2, U_PAGE), -1);
	first_ns = t_now_ns() - t0;
	t0 = t_now_ns();
	T_ASSERT_EQ(u_probe_cmp(base + len - U_PAGE, expect + len - U_PAGE, U_PAGE), -1);
	second_ns = t_now_ns() - t0;
	t_log("first fault failed after %.0f ms, the next after %.1f ms (timeout %u ms)", first_ns / 1e6,
	      second_ns / 1e6, timeout_ms);
	/* Retried for the whole timeout first, and not much longer. */
	T_ASSERT(first_ns >= timeout_ms * 900000ull && first_ns < timeout_ms * 3000000ull);
	/* Once the server is known gone, a fault costs one connection attempt. */
	T_ASSERT(second_ns < timeout_ms * 1000000ull);
	/* Every page either has its bytes or raises SIGBUS: never zeros. */
	for (size_t p = 0; p < npages; p += 61) {
		int c = u_probe_cmp(base + p * U_PAGE, expect + p * U_PAGE, U_PAGE);
		T_ASSERT(c != 1, "page %zu has wrong bytes%s", p,
			 u_all_zero(base + p * U_PAGE, U_PAGE) ? " (zeros)" : "");
		T_ASSERT(p >= npages / 8 || c == 0, "page %zu was restored before the kill", p);
	}
	T_ASSERT(u_rstats(r).pages_poisoned >= 2);
	T_ASSERT(n_rstats(st).timeouts >= 1);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(st);
	t_rmtree(dir);
	return T_PASS;
}

/* Restarted with another image on the same port: refused (-ESTALE), pages poisoned. */
static int t_image_changed(void *arg)
{
	size_t len = 4 * N_MIB;
	char dir[64], a[128], b[128], addr[64];
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store_iov iov;
	uint8_t *expect, *base, page[4096];
	uint64_t t0;
	pid_t pid;
	int port;

	(void)arg;
	u_bus_install();
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	n_write_image(a, 1, len, 23, SIZE_MAX);
	n_write_image(b, 1, len, 24, SIZE_MAX);
	expect = n_expect(len, 23);
	pid = n_spawn_server(a, "127.0.0.1:0", 0, &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ro = n_ropts(addr, 0);
	ro.timeout_ms = t_scaled_ms(5000);
	st = n_remote(&ro);
	e = u_engine(0, 1);
	r = u_region(e, &n_anon, len, st, FL_REGION_NO_PREFETCH);
	base = fl_region_addr(r);
	U_CHECK(base, expect, U_PAGE, U_PAGE);
	n_kill(pid);
	pid = n_spawn_server(b, addr, 0, &port);
	t0 = t_now_ns();
	T_ASSERT_EQ(u_probe_cmp(base + len / 2, expect + len / 2, U_PAGE), -1);
	/* Refused at once, not after the timeout. */
	T_ASSERT(t_now_ns() - t0 < t_scaled_ns(2000));
	iov = (struct fl_store_iov){ .offset = U_PAGE, .buf = page, .len = U_PAGE, .flags_in = FL_STORE_IN_URGENT };
	T_ASSERT_EQ(fl_store_read(st, &iov, 1), -ESTALE);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(st);
	n_kill(pid);
	t_rmtree(dir);
	return T_PASS;
}

/* ---- remote vs local (logged, not asserted: benchmarks live in faultline bench) ---- */

static double restore_ms(struct fl_store *st, size_t len, const uint8_t *expect)
{
	struct fl_engine *e = u_engine(0, 1);
	struct fl_region *r = u_region(e, &n_anon, len, st, 0);
	const volatile uint8_t *base = fl_region_addr(r);
	uint64_t t0 = t_now_ns(), sum = 0;

	for (size_t off = 0; off < len; off += U_PAGE)
		sum += base[off];
	t0 = t_now_ns() - t0;
	(void)sum;
	U_CHECK((const uint8_t *)base, expect, len, U_PAGE);
	fl_region_free(r);
	fl_engine_free(e);
	return t0 / 1e6;
}

static int t_ratio(void *arg)
{
	size_t len = 128 * N_MIB;
	char dir[64], path[128];
	struct n_server s;
	struct fl_remote_opts ro;
	struct fl_store *local, *remote;
	struct fl_image *img;
	uint8_t *expect;
	double l[3], rm[3];

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-net");
	snprintf(path, sizeof(path), "%s/img", dir);
	n_write_image(path, 1, len, 29, SIZE_MAX);
	expect = n_expect(len, 29);
	T_OK(fl_image_open(path, 0, &img));
	T_OK(fl_image_store_new(img, 0, &local));
	n_server_start(&s, path, NULL);
	ro = n_ropts(s.addr, 0);
	remote = n_remote(&ro);
	for (int i = 0; i < 3; i++) {
		l[i] = restore_ms(local, len, expect);
		rm[i] = restore_ms(remote, len, expect);
	}
	t_log("lazy restore of %zu MiB, sequential: local image %.0f/%.0f/%.0f ms, page server %.0f/%.0f/%.0f ms",
	      len / N_MIB, l[0], l[1], l[2], rm[0], rm[1], rm[2]);
	{
		double ls = l[0] + l[1] + l[2], rsum = rm[0] + rm[1] + rm[2];
		t_log("remote / local = %.2f (mean of 3, alternating)", rsum / ls);
	}
	fl_store_unref(remote);
	fl_store_unref(local);
	n_server_stop(&s);
	fl_image_close(img);
	t_rmtree(dir);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "remote/restore-anon-missing", t_restore, (void *)&u_cfgs[0], 60 },
	{ "remote/restore-shmem-missing", t_restore, (void *)&u_cfgs[1], 60, U_NEEDS_SHMEM },
	{ "remote/restore-shmem-minor", t_restore, (void *)&u_cfgs[2], 60, U_NEEDS_SHMEM_MINOR },
	{ "remote/restore-hugetlb-missing", t_restore, (void *)&u_cfgs[3], 60, U_NEEDS_HUGETLB },
	{ "remote/restore-hugetlb-minor", t_restore, (void *)&u_cfgs[4], 60, U_NEEDS_HUGETLB_MINOR },
	{ "remote/store-read", t_store_read, NULL, 60 },
	{ "remote/readahead", t_readahead, NULL, 60 },
	{ "remote/errors", t_errors, NULL, 60 },
	{ "remote/threads", t_threads, NULL, 120 },
	{ "remote/background", t_background, NULL, 120 },
	{ "remote/drops", t_drops, NULL, 120 },
	{ "remote/urgent", t_urgent, NULL, 120 },
	{ "remote/max-clients", t_max_clients, NULL, 60 },
	{ "remote/server-restart", t_server_restart, NULL, 120 },
	{ "remote/server-killed", t_server_killed, NULL, 60 },
	{ "remote/image-changed", t_image_changed, NULL, 60 },
	{ "remote/ratio", t_ratio, NULL, 180 },
};

int main(int argc, char **argv)
{
	n_serve_main(argc, argv);
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
