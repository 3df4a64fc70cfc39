// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The far-memory Redis store (fl_store_redis_far_new()) against real
 * redis-server processes: write / read / flush round trips; the
 * generation of a page grows with each write and a value another writer
 * stored is refused (-ESTALE); corrupt, misplaced and vanished values read
 * as -EIO, never zeros; missing pages are zeros only for a new store that
 * asked for it; a server killed during write batches fails the writes
 * that did not complete and loses none that were acknowledged (appendonly,
 * appendfsync always); flush WAITs for a primary's replicas and fails when
 * one is gone; a read-only replica says so; and in a Redis Cluster, writes
 * made while a slot migrates (MIGRATING / IMPORTING, keys moving with
 * MIGRATE) all land and read back, and flush WAITs on every primary.
 */
#include "rtest.h"
#include "redis-cluster.h"

#define FAR_PAGES 1024		/* 4 MiB: two 2 MiB chunks */
#define FAR_SIZE ((uint64_t)FAR_PAGES * R_PAGE)

static struct fl_store *far_open(const char *url, unsigned flags, unsigned timeout_ms)
{
	struct fl_redis_opts o = r_opts(url, 0, t_scaled_ms(timeout_ms));
	struct fl_store *s = NULL;
	int r = fl_store_redis_far_new(&o, FAR_SIZE, flags, &s);
	T_ASSERT(r == 0, "fl_store_redis_far_new(%s): %d (%s)", url, r, strerror(-r));
	return s;
}

static struct fl_redis_stats far_stats(struct fl_store *s)
{
	struct fl_redis_stats st = { .sz = sizeof(st) };
	T_OK(fl_store_ctl(s, FL_REDIS_CTL_STATS, &st));
	return st;
}

/* Read [first, first + n) pages into out; the result. */
static int far_get(struct fl_store *s, uint64_t first, size_t n, uint8_t *out)
{
	struct fl_store_iov iov = { .offset = first * R_PAGE, .buf = out, .len = n * R_PAGE };
	int r = fl_store_read(s, &iov, 1);
	if (!r && (iov.flags_out & FL_STORE_OUT_ZERO))
		memset(out, 0, iov.len);
	return r;
}

static int far_put(struct fl_store *s, uint64_t first, size_t n, const uint8_t *in)
{
	struct fl_store_iov iov = { .offset = first * R_PAGE, .buf = (void *)in, .len = n * R_PAGE };
	return fl_store_write(s, &iov, 1);
}

/* The generation stored in page's raw value. */
static uint64_t raw_gen(const struct r_server *srv, const char *prefix, uint64_t page)
{
	redisReply *r = r_cmd(srv, "GET %s:far:{%s:%llu}:%llu", prefix, prefix, (unsigned long long)(page / 512),
			      (unsigned long long)page);
	uint64_t g;
	T_ASSERT(r->type == REDIS_REPLY_STRING && r->len >= 32, "page %llu has no value", (unsigned long long)page);
	memcpy(&g, r->str + 16, 8);
	freeReplyObject(r);
	return g;
}

/* Random writes of runs, batched; `want` follows them. */
static void random_writes(struct fl_store *s, uint8_t *want, uint32_t seed, unsigned rounds)
{
	uint8_t *data = malloc(FAR_SIZE);
	uint64_t x = seed;

	T_ASSERT(data);
	t_fill_pattern(data, FAR_SIZE, 0, seed);
	for (unsigned round = 0; round < rounds; round++) {
		struct fl_store_iov iov[6];
		for (int k = 0; k < 6; k++) {
			uint64_t p, len;
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			p = (x >> 33) % (FAR_PAGES - 16);
			len = 1 + (x >> 17) % 16;
			iov[k] = (struct fl_store_iov){ .offset = p * R_PAGE, .buf = data + p * R_PAGE,
							.len = len * R_PAGE };
		}
		T_OK(fl_store_write(s, iov, 6));
		for (int k = 0; k < 6; k++) {
			T_ASSERT_EQ(iov[k].result, 0);
			memcpy(want + iov[k].offset, iov[k].buf, iov[k].len);
		}
	}
	free(data);
}

static int c_single_roundtrip(void *arg)
{
	struct r_server srv;
	char url[128], url2[128];
	struct fl_store *s, *again, *s2 = NULL;
	struct fl_redis_opts o;
	struct fl_redis_stats st;
	uint8_t *want = calloc(1, FAR_SIZE), *got = malloc(FAR_SIZE), page[R_PAGE];
	uint64_t g;
	(void)arg;

	r_require();
	T_ASSERT(want && got);
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "far1");
	s = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 5000);
	T_ASSERT(strcmp(fl_store_name(s), "redis-far") == 0);
	T_ASSERT_EQ(fl_store_size(s), FAR_SIZE);
	T_ASSERT_EQ(fl_store_ctl(s, FL_STORE_CTL_WRITABLE, NULL), 1);
	/* New: every page zeros. */
	T_OK(far_get(s, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0);

	random_writes(s, want, 77, 20);
	memset(page, 0, sizeof(page));
	T_OK(far_put(s, 40, 1, page));	/* a page of zeros over data */
	memset(want + 40 * R_PAGE, 0, R_PAGE);
	T_OK(far_get(s, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0, "read back differs");
	T_OK(fl_store_flush(s));
	st = far_stats(s);
	T_ASSERT_EQ(st.waits, 0);	/* no replicas: nothing to wait for */
	T_ASSERT(st.pages_written > 0 && st.write_errors == 0);

	/* Generations: each write of a page stores the next one. */
	memset(page, 0x31, sizeof(page));
	T_OK(far_put(s, 1020, 1, page));	/* past the random writes: the first write of it */
	T_ASSERT_EQ(raw_gen(&srv, "far1", 1020), 1);
	T_OK(far_put(s, 1000, 1, page));
	g = raw_gen(&srv, "far1", 1000);
	T_ASSERT(g >= 1);
	T_OK(far_put(s, 1000, 1, page));
	T_OK(far_put(s, 1000, 1, page));
	T_ASSERT_EQ(raw_gen(&srv, "far1", 1000), g + 2);
	memcpy(want + 1000 * R_PAGE, page, R_PAGE);
	memcpy(want + 1020 * R_PAGE, page, R_PAGE);

	/* Another store over the prefix reads the same bytes, then writes page 1000 ... */
	again = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 5000);
	T_OK(far_get(again, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0, "second store reads other bytes");
	memset(page, 0x32, sizeof(page));
	T_OK(far_put(again, 1000, 1, page));
	T_ASSERT_EQ(raw_gen(&srv, "far1", 1000), g + 3);
	/* ... which the first one, that last wrote generation g + 2, refuses. */
	T_ASSERT_EQ(far_get(s, 1000, 1, got), -ESTALE);
	T_ASSERT(far_stats(s).stale >= 1);
	fl_store_unref(again);

	/* Another size over the same prefix; bad options. */
	o = r_opts(url, 0, t_scaled_ms(5000));
	T_ASSERT_EQ(fl_store_redis_far_new(&o, 2 * FAR_SIZE, 0, &s2), -EINVAL);
	T_ASSERT_EQ(fl_store_redis_far_new(&o, FAR_SIZE + 1, 0, &s2), -EINVAL);
	T_ASSERT_EQ(fl_store_redis_far_new(&o, FAR_SIZE, 1u << 9, &s2), -EINVAL);
	o.region = 1;
	T_ASSERT_EQ(fl_store_redis_far_new(&o, FAR_SIZE, 0, &s2), -EINVAL);
	T_ASSERT(s2 == NULL);
	/* Without FL_REDIS_FAR_ZERO_MISSING a page never written is not zeros. */
	r_url(url2, sizeof(url2), &srv, "far2");
	s2 = far_open(url2, 0, 5000);
	T_ASSERT_EQ(far_get(s2, 5, 1, got), -ENODATA);
	fl_store_unref(s2);
	fl_store_unref(s);
	r_kill(&srv);
	free(want);
	free(got);
	return T_PASS;
}

/* Corrupt, misplaced and vanished values: -EIO, and the page not zeroed as if it were data. */
static int c_single_corrupt(void *arg)
{
	struct r_server srv;
	char url[128], key[128], key2[128];
	struct fl_store *s;
	uint8_t *data = malloc(8 * R_PAGE), got[R_PAGE];
	redisReply *r;
	(void)arg;

	r_require();
	T_ASSERT(data);
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "farc");
	s = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 5000);
	t_fill_pattern(data, 8 * R_PAGE, 0, 5);
	T_OK(far_put(s, 0, 8, data));
	snprintf(key, sizeof(key), "farc:far:{farc:0}:3");
	snprintf(key2, sizeof(key2), "farc:far:{farc:0}:4");

	/* Garbage under a page's key. */
	R_STATUS(&srv, "SET %s %s", key, "garbage-not-a-page");
	memset(got, 0x77, sizeof(got));
	T_ASSERT_EQ(far_get(s, 3, 1, got), -EIO);
	/* One flipped byte in a valid value's page bytes. */
	T_OK(far_put(s, 3, 1, data + 3 * R_PAGE));
	r = r_cmd(&srv, "GET %s", key);
	T_ASSERT(r->type == REDIS_REPLY_STRING && r->len == 32 + R_PAGE);
	{
		char *v = malloc(r->len);
		const char *argv[] = { "SET", key, v };
		size_t lens[] = { 3, strlen(key), r->len };
		T_ASSERT(v);
		memcpy(v, r->str, r->len);
		v[32 + 100] ^= 1;
		freeReplyObject(r_cmd_argv(&srv, 3, argv, lens));
		T_ASSERT_EQ(far_get(s, 3, 1, got), -EIO);
		/* A valid value of page 3 under page 4's key: misplaced. */
		v[32 + 100] ^= 1;
		argv[1] = key2;
		lens[1] = strlen(key2);
		freeReplyObject(r_cmd_argv(&srv, 3, argv, lens));
		T_ASSERT_EQ(far_get(s, 4, 1, got), -EIO);
		free(v);
	}
	freeReplyObject(r);
	/* An older value of a page put back (a server that lost the last
	 * write, say restarted from an old snapshot): refused, -ESTALE. */
	{
		redisReply *old;
		const char *argv[3];
		size_t lens[3];
		T_OK(far_put(s, 7, 1, data + 7 * R_PAGE));
		old = r_cmd(&srv, "GET farc:far:{farc:0}:7");
		T_ASSERT(old->type == REDIS_REPLY_STRING);
		T_OK(far_put(s, 7, 1, data + 6 * R_PAGE));
		argv[0] = "SET";
		argv[1] = "farc:far:{farc:0}:7";
		argv[2] = old->str;
		lens[0] = 3;
		lens[1] = strlen(argv[1]);
		lens[2] = old->len;
		freeReplyObject(r_cmd_argv(&srv, 3, argv, lens));
		freeReplyObject(old);
		T_ASSERT_EQ(far_get(s, 7, 1, got), -ESTALE);
	}
	/* A page this store wrote that the server lost: -EIO, not zeros. */
	r = r_cmd(&srv, "DEL farc:far:{farc:0}:5");
	freeReplyObject(r);
	T_ASSERT_EQ(far_get(s, 5, 1, got), -EIO);
	/* The others are intact. */
	T_OK(far_get(s, 6, 1, got));
	T_ASSERT(memcmp(got, data + 6 * R_PAGE, R_PAGE) == 0);
	T_ASSERT(far_stats(s).bad_values >= 3);
	fl_store_unref(s);
	r_kill(&srv);
	free(data);
	return T_PASS;
}

/* ---- the server killed during write batches ------------------------------------------ */

struct writer {
	struct fl_store *s;
	_Atomic bool started;
	unsigned rounds_ok;		/* whole batches acknowledged */
	int results[64];		/* of the failed batch, per page */
	int err;
};

#define KILL_FIRST 64
#define KILL_PAGES 64

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t *buf = malloc(KILL_PAGES * R_PAGE);

	for (unsigned round = 1; buf && round < 100000; round++) {
		struct fl_store_iov iov[KILL_PAGES];
		memset(buf, (int)(round & 0xff), KILL_PAGES * R_PAGE);
		for (unsigned i = 0; i < KILL_PAGES; i++)
			iov[i] = (struct fl_store_iov){ .offset = (KILL_FIRST + i) * R_PAGE, .buf = buf + i * R_PAGE,
							.len = R_PAGE };
		atomic_store(&w->started, true);
		w->err = fl_store_write(w->s, iov, KILL_PAGES);
		if (w->err) {
			for (unsigned i = 0; i < KILL_PAGES; i++)
				w->results[i] = iov[i].result;
			break;
		}
		w->rounds_ok = round;
	}
	free(buf);
	return NULL;
}

static int c_single_killed(void *arg)
{
	struct r_server srv;
	char url[128];
	struct fl_store *s;
	struct writer w = { 0 };
	pthread_t tid;
	uint8_t *base = malloc(KILL_FIRST * R_PAGE), *got = malloc(KILL_PAGES * R_PAGE);
	unsigned failed = 0;
	(void)arg;

	r_require();
	T_ASSERT(base && got);
	r_start_ext(&srv, false, true, 0);
	r_url(url, sizeof(url), &srv, "fark");
	s = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 1500);
	t_fill_pattern(base, KILL_FIRST * R_PAGE, 0, 9);
	T_OK(far_put(s, 0, KILL_FIRST, base));
	T_OK(fl_store_flush(s));

	w.s = s;
	T_ASSERT(pthread_create(&tid, NULL, writer_main, &w) == 0);
	T_WAIT_FOR(atomic_load(&w.started), 5000);
	t_sleep_ms(100);
	r_kill(&srv);
	pthread_join(tid, NULL);
	t_log("killed after %u whole batches; the failed batch: %d", w.rounds_ok, w.err);
	T_ASSERT(w.err < 0, "a write to a dead server succeeded");
	for (unsigned i = 0; i < KILL_PAGES; i++) {
		T_ASSERT(w.results[i] <= 0);
		failed += w.results[i] != 0;
	}
	T_ASSERT(failed >= 1, "the writer was not told which writes failed");
	/* Reads fail too while it is down (not zeros). */
	T_ASSERT(far_get(s, 0, 1, got) < 0);

	r_restart(&srv);
	/* Written before: intact. */
	{
		uint8_t *back = malloc(KILL_FIRST * R_PAGE);
		T_ASSERT(back);
		T_OK(far_get(s, 0, KILL_FIRST, back));
		T_ASSERT(memcmp(back, base, KILL_FIRST * R_PAGE) == 0, "pages flushed before the kill differ");
		free(back);
	}
	/* The batch being written: each page is the last acknowledged round,
	 * or the failed one; a page acknowledged in the failed round is that
	 * round's (acknowledged = durable with appendfsync always). */
	T_OK(far_get(s, KILL_FIRST, KILL_PAGES, got));
	for (unsigned i = 0; i < KILL_PAGES; i++) {
		uint8_t v = got[i * R_PAGE], last = (uint8_t)(w.rounds_ok & 0xff), next = (uint8_t)((w.rounds_ok + 1) & 0xff);
		for (size_t b = 1; b < R_PAGE; b++)
			T_ASSERT(got[i * R_PAGE + b] == v, "page %u torn", i);
		if (w.results[i] == 0)
			T_ASSERT(v == next, "page %u acknowledged in round %u but holds %u", i, w.rounds_ok + 1, v);
		else
			T_ASSERT(v == last || v == next || (w.rounds_ok == 0 && v == 0), "page %u holds %u (rounds %u/%u)",
				 i, v, last, next);
	}
	/* Writing again settles them. */
	memset(got, 0xaa, KILL_PAGES * R_PAGE);
	T_OK(far_put(s, KILL_FIRST, KILL_PAGES, got));
	T_OK(fl_store_flush(s));
	fl_store_unref(s);
	r_kill(&srv);
	free(base);
	free(got);
	return T_PASS;
}

/* ---- replicas and WAIT ------------------------------------------------------------- */

static bool replica_synced(const struct r_server *primary, int want)
{
	redisReply *r = r_cmd(primary, "INFO replication");
	char needle[64];
	bool ok;
	snprintf(needle, sizeof(needle), "connected_slaves:%d", want);
	ok = r->type == REDIS_REPLY_STRING && strstr(r->str, needle) && strstr(r->str, "state=online");
	freeReplyObject(r);
	return ok;
}

static int c_single_replica_wait(void *arg)
{
	struct r_server prim, rep;
	char url[128], rurl[128];
	struct fl_store *s, *ro;
	struct fl_redis_opts o;
	uint8_t *data = malloc(16 * R_PAGE), got[R_PAGE];
	uint64_t end;
	(void)arg;

	r_require();
	T_ASSERT(data);
	r_start(&prim, false);
	r_start_ext(&rep, false, false, prim.port);
	end = t_deadline_ms(20000);
	while (!replica_synced(&prim, 1)) {
		T_ASSERT(t_now_ns() < end, "replica did not sync");
		t_sleep_ms(50);
	}
	r_url(url, sizeof(url), &prim, "farw");
	s = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 2000);
	t_fill_pattern(data, 16 * R_PAGE, 0, 3);
	T_OK(far_put(s, 0, 16, data));
	T_OK(fl_store_flush(s));
	T_ASSERT_EQ(far_stats(s).waits, 1);
	/* Flushed: the replica has it. */
	{
		redisReply *r = r_cmd(&rep, "EXISTS farw:far:{farw:0}:15");
		T_ASSERT(r->type == REDIS_REPLY_INTEGER && r->integer == 1);
		freeReplyObject(r);
	}
	/* The replica itself: read-only. */
	r_url(rurl, sizeof(rurl), &rep, "farw");
	o = r_opts(rurl, 0, t_scaled_ms(2000));
	T_OK(fl_store_redis_far_new(&o, FAR_SIZE, 0, &ro));
	T_ASSERT_EQ(fl_store_ctl(ro, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_OK(far_get(ro, 15, 1, got));
	T_ASSERT(memcmp(got, data + 15 * R_PAGE, R_PAGE) == 0);
	T_ASSERT_EQ(far_put(ro, 1, 1, got), -EROFS);
	T_ASSERT_EQ(fl_store_flush(ro), -EROFS);
	fl_store_unref(ro);

	/* The replica gone: writes still succeed, flush does not. */
	r_kill(&rep);
	T_OK(far_put(s, 0, 16, data));
	T_ASSERT_EQ(fl_store_flush(s), -EIO);
	/* And stays failed until a replica acknowledges again. */
	T_ASSERT_EQ(fl_store_flush(s), -EIO);
	rep.replica_of = prim.port;
	r_restart(&rep);
	end = t_deadline_ms(20000);
	while (!replica_synced(&prim, 1)) {
		T_ASSERT(t_now_ns() < end, "replica did not sync again");
		t_sleep_ms(50);
	}
	T_OK(fl_store_flush(s));
	fl_store_unref(s);
	r_kill(&prim);
	r_kill(&rep);
	free(data);
	return T_PASS;
}

/* ---- cluster --------------------------------------------------------------------- */

static int c_cluster_migration(void *arg)
{
	struct r_server s[R_NODES];
	char url[128], key[64];
	struct fl_store *st;
	struct fl_redis_stats rs;
	uint8_t *want = calloc(1, FAR_SIZE), *got = malloc(FAR_SIZE);
	unsigned slot, src, dst, moved;
	(void)arg;

	r_require();
	T_ASSERT(want && got);
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[0], "farcl");
	st = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 10000);
	random_writes(st, want, 5, 10);
	/* Every page of chunk 0 once, so its slot has keys to move. */
	{
		uint8_t *c0 = malloc(512 * R_PAGE);
		T_ASSERT(c0);
		t_fill_pattern(c0, 512 * R_PAGE, 0, 55);
		T_OK(far_put(st, 0, 512, c0));
		memcpy(want, c0, 512 * R_PAGE);
		free(c0);
	}
	snprintf(key, sizeof(key), "farcl:0");
	slot = fl__cluster_keyslot(key, strlen(key));
	src = (unsigned)r_slot_owner(s, 0, slot);
	dst = (src + 1) % R_NODES;
	r_slot_migrating(s, src, dst, slot);
	/* Half the keys move; then writes over the whole chunk (some keys on
	 * each side: ASK for the moved ones), and the rest moves. */
	moved = r_migrate_keys(&s[src], &s[dst], slot, 200);
	T_ASSERT(moved > 0);
	random_writes(st, want, 6, 10);
	{
		uint8_t *c0 = malloc(512 * R_PAGE);
		T_ASSERT(c0);
		t_fill_pattern(c0, 512 * R_PAGE, 0, 56);
		T_OK(far_put(st, 0, 512, c0));
		memcpy(want, c0, 512 * R_PAGE);
		free(c0);
	}
	T_OK(far_get(st, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0, "read back during the migration differs");
	while (r_migrate_keys(&s[src], &s[dst], slot, 100))
		;
	r_slot_assign(s, dst, slot);
	random_writes(st, want, 7, 10);
	T_OK(far_get(st, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0, "read back after the migration differs");
	T_OK(fl_store_flush(st));
	rs = far_stats(st);
	t_log("ask %llu moved %llu tryagain %llu written %llu", (unsigned long long)rs.ask,
	      (unsigned long long)rs.moved, (unsigned long long)rs.tryagain, (unsigned long long)rs.pages_written);
	T_ASSERT(rs.ask > 0, "no write was redirected by ASK");
	T_ASSERT(rs.moved > 0, "no MOVED after the slot moved");
	T_ASSERT_EQ(rs.write_errors, 0);
	/* A fresh store reads it all from wherever it now lives (pages
	 * never written: zeros, as asked). */
	fl_store_unref(st);
	st = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 10000);
	T_OK(far_get(st, 0, FAR_PAGES, got));
	T_ASSERT(memcmp(got, want, FAR_SIZE) == 0);
	fl_store_unref(st);
	free(want);
	free(got);
	return T_PASS;
}

/* 3 primaries + 3 replicas (redis-cli --cluster create --cluster-replicas 1). */
static void cluster6_start(struct r_server *s)
{
	char addr[6][32], log[600];
	const char *argv[16];
	pid_t pid;
	int status;
	unsigned n = 0;
	uint64_t end;

	for (unsigned i = 0; i < 6; i++) {
		r_start(&s[i], true);
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", s[i].port);
	}
	snprintf(log, sizeof(log), "%s/cluster-create.log", s[0].dir);
	argv[n++] = "redis-cli";
	argv[n++] = "--cluster";
	argv[n++] = "create";
	for (unsigned i = 0; i < 6; i++)
		argv[n++] = addr[i];
	argv[n++] = "--cluster-replicas";
	argv[n++] = "1";
	argv[n++] = "--cluster-yes";
	argv[n] = NULL;
	pid = r_spawnp(argv, log, NULL);
	end = t_deadline_ms(60000);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		T_ASSERT(t_now_ns() < end, "redis-cli --cluster create timed out, see %s", log);
		t_sleep_ms(20);
	}
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "redis-cli --cluster create failed, see %s", log);
	/* Ready: the state is ok everywhere and every primary has its replica online. */
	end = t_deadline_ms(60000);
	for (;;) {
		unsigned ok = 0, online = 0;
		for (unsigned i = 0; i < 6; i++) {
			redisReply *r = r_cmd(&s[i], "CLUSTER INFO"), *q = r_cmd(&s[i], "INFO replication");
			ok += r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
			      strstr(r->str, "cluster_known_nodes:6");
			online += q->type == REDIS_REPLY_STRING && strstr(q->str, "role:master") &&
				  strstr(q->str, "connected_slaves:1") && strstr(q->str, "state=online");
			freeReplyObject(r);
			freeReplyObject(q);
		}
		if (ok == 6 && online == 3)
			break;
		T_ASSERT(t_now_ns() < end, "cluster with replicas not ready in 60 s (%u ok, %u online)", ok, online);
		t_sleep_ms(100);
	}
}

static int c_cluster_replicas_wait(void *arg)
{
	struct r_server s[6];
	char url[128];
	struct fl_store *st;
	uint8_t *want = calloc(1, FAR_SIZE);
	unsigned primaries_written = 0;
	int victim = -1;
	(void)arg;

	r_require();
	T_ASSERT(want);
	cluster6_start(s);
	r_url(url, sizeof(url), &s[0], "farrep");
	st = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 4000);
	random_writes(st, want, 11, 20);
	T_OK(fl_store_flush(st));
	primaries_written = (unsigned)far_stats(st).waits;
	T_ASSERT(primaries_written >= 1, "flush waited on no primary");
	/* Kill the replica of a primary that holds our chunks. */
	for (unsigned i = 0; i < 6 && victim < 0; i++) {
		redisReply *r = r_cmd(&s[i], "INFO replication");
		if (r->type == REDIS_REPLY_STRING && strstr(r->str, "role:slave")) {
			redisReply *k = r_cmd(&s[i], "DBSIZE");
			if (k->type == REDIS_REPLY_INTEGER && k->integer > 1)
				victim = (int)i;
			freeReplyObject(k);
		}
		freeReplyObject(r);
	}
	T_ASSERT(victim >= 0, "no replica holds far keys");
	r_kill(&s[victim]);
	random_writes(st, want, 12, 20);
	T_ASSERT_EQ(fl_store_flush(st), -EIO);
	fl_store_unref(st);
	free(want);
	return T_PASS;
}

/* ---- threads ---------------------------------------------------------------- */

#define MT_THREADS 4
#define MT_SLICE (FAR_PAGES / MT_THREADS)

struct mt {
	struct fl_store *s;
	unsigned idx;
	char why[160];
};

/* Each thread: its own slice, a new version of a random run, the slice read back. */
static void *mt_main(void *arg)
{
	struct mt *m = arg;
	uint8_t *mine = calloc(MT_SLICE, R_PAGE), *got = malloc(MT_SLICE * R_PAGE);
	uint64_t first = (uint64_t)m->idx * MT_SLICE, x = m->idx + 7;

	if (!mine || !got) {
		snprintf(m->why, sizeof(m->why), "out of memory");
		goto out;
	}
	for (unsigned round = 0; round < 25; round++) {
		uint64_t p, len;
		int r;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p = (x >> 33) % (MT_SLICE - 32);
		len = 1 + (x >> 20) % 32;
		t_fill_pattern(mine + p * R_PAGE, len * R_PAGE, p, (uint32_t)(x >> 9));
		r = far_put(m->s, first + p, len, mine + p * R_PAGE);
		if (!r)
			r = far_get(m->s, first, MT_SLICE, got);
		if (r) {
			snprintf(m->why, sizeof(m->why), "thread %u round %u: %d", m->idx, round, r);
			break;
		}
		if (memcmp(got, mine, MT_SLICE * R_PAGE)) {
			snprintf(m->why, sizeof(m->why), "thread %u round %u: read back differs", m->idx, round);
			break;
		}
	}
out:
	free(mine);
	free(got);
	return NULL;
}

static int c_single_threads(void *arg)
{
	struct r_server srv;
	char url[128];
	struct fl_store *s;
	struct mt m[MT_THREADS];
	pthread_t tid[MT_THREADS];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "farmt");
	s = far_open(url, FL_REDIS_FAR_ZERO_MISSING, 5000);
	for (unsigned i = 0; i < MT_THREADS; i++) {
		m[i] = (struct mt){ .s = s, .idx = i };
		T_ASSERT(pthread_create(&tid[i], NULL, mt_main, &m[i]) == 0);
	}
	for (unsigned i = 0; i < MT_THREADS; i++)
		pthread_join(tid[i], NULL);
	for (unsigned i = 0; i < MT_THREADS; i++)
		T_ASSERT(!m[i].why[0], "%s", m[i].why);
	T_OK(fl_store_flush(s));
	T_ASSERT_EQ(far_stats(s).write_errors + far_stats(s).stale + far_stats(s).bad_values, 0);
	fl_store_unref(s);
	r_kill(&srv);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "single-threads", c_single_threads, NULL, 60 },
	{ "single-roundtrip-generations", c_single_roundtrip, NULL, 60 },
	{ "single-corrupt-values", c_single_corrupt, NULL, 60 },
	{ "single-killed-during-writes", c_single_killed, NULL, 90 },
	{ "single-replica-wait", c_single_replica_wait, NULL, 90 },
	{ "cluster-writes-during-migration", c_cluster_migration, NULL, 120 },
	{ "cluster-replicas-wait", c_cluster_replicas_wait, NULL, 150 },
};

int main(int argc, char **argv)
{
	return r_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
