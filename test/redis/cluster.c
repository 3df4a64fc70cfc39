// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis store against a 3-primary Redis Cluster on loopback: routing by
 * key slot, chunks spread over the nodes, MOVED after a slot moved, ASK and
 * TRYAGAIN while a slot is half-migrated (reads and pushes), slots moved
 * while threads fault, and a primary killed for good.
 */
#include "rtest.h"
#include "redis-cluster.h"

/* The cluster slot of a chunk's hash tag. */
static unsigned chunk_slot(const char *prefix, const uint8_t *id, unsigned region, unsigned chunk)
{
	char key[256];
	r_page_key(key, sizeof(key), prefix, id, region, (uint64_t)chunk * 512);
	return fl__cluster_keyslot(key, strlen(key));
}

static int t_restore(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	static const size_t len[] = { 8 * U_MIB + 5 * R_PAGE, U_MIB };
	unsigned nodes_with_keys = 0;
	char url[128];
	(void)arg;

	r_require();
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[1], "cl");	/* any node will do as the seed */
	r_image_make(&im, "cl", 2, len, 81, NULL, 0);
	r_push(&im, url);
	for (unsigned i = 0; i < R_NODES; i++) {
		long long n = r_int(&s[i], "DBSIZE");
		t_log("node %u: %lld keys", i, n);
		nodes_with_keys += n > 0;
	}
	T_ASSERT(nodes_with_keys >= 2, "chunks are spread over the nodes");
	for (unsigned r = 0; r < 2; r++) {
		struct r_lazy l;
		struct fl_redis_stats rs;
		r_lazy_open(&l, url, r, t_scaled_ms(5000), 2, 0);
		u_read_threads(l.base, im.expect[r], R_PAGE, l.len / R_PAGE, 4, 1);
		U_CHECK(l.base, im.expect[r], l.len, R_PAGE);
		rs = r_stats(l.st);
		r_log_stats("cluster", &rs);
		T_ASSERT(rs.cluster && rs.nodes == R_NODES, "cluster %d, %u nodes", rs.cluster, rs.nodes);
		T_ASSERT_EQ(rs.moved, 0);
		T_ASSERT_EQ(rs.bad_values + rs.missing + rs.timeouts, 0);
		r_lazy_close(&l);
	}
	return T_PASS;
}

/* Our slot computation agrees with the server's on all kinds of keys. */
static int t_keyslot_live(void *arg)
{
	struct r_server s[R_NODES];
	static const char *const keys[] = {
		"foo", "bar", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
		"foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}", "a{b", "a}b{c}", "123456789", "",
		"faultline:meta", "vm1:{0123456789abcdef0123456789abcdef:0:0}:0", NULL,
	};
	char key[256];
	(void)arg;

	r_require();
	r_cluster_start(s);
	for (int i = 0; keys[i]; i++) {
		redisReply *r = r_cmd(&s[0], "CLUSTER KEYSLOT %s", keys[i]);
		T_ASSERT(r->type == REDIS_REPLY_INTEGER);
		T_ASSERT_EQ(fl__cluster_keyslot(keys[i], strlen(keys[i])), r->integer);
		freeReplyObject(r);
	}
	for (unsigned i = 0; i < 500; i++) {
		redisReply *r;
		snprintf(key, sizeof(key), "p%u:{%08x%08x:%u:%u}:%u", i % 7, i * 2654435761u, i, i % 3, i / 3, i * 17);
		r = r_cmd(&s[i % R_NODES], "CLUSTER KEYSLOT %s", key);
		T_ASSERT_EQ(fl__cluster_keyslot(key, strlen(key)), r->integer);
		freeReplyObject(r);
	}
	return T_PASS;
}

/* Slots moved after the store loaded its map: MOVED, map reload, right bytes. */
static int t_moved(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	struct r_lazy l;
	struct fl_redis_stats rs;
	static const size_t len[] = { 8 * U_MIB };
	char url[128];
	(void)arg;

	r_require();
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[0], "mv");
	r_image_make(&im, "mv", 1, len, 91, NULL, 0);
	r_push(&im, url);
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);
	U_CHECK(l.base, im.expect[0], 2 * U_MIB, R_PAGE);	/* chunk 0, map as loaded */
	for (unsigned c = 1; c < 4; c++) {
		unsigned slot = chunk_slot("mv", im.id, 0, c);
		unsigned owner = (unsigned)r_slot_owner(s, 0, slot);
		t_log("chunk %u: slot %u, node %u -> %u", c, slot, owner, (owner + 1) % R_NODES);
		r_move_slot(s, slot, (owner + 1) % R_NODES);
	}
	/* The store reloads its map at most every 100 ms (RC_REFRESH_MIN_NS);
	 * on a fast machine the moves above take less than that since the
	 * map was loaded, and every MOVED would be answered by following the
	 * redirect alone. */
	t_sleep_ms(t_scaled_ms(150));
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	rs = r_stats(l.st);
	r_log_stats("moved", &rs);
	T_ASSERT(rs.moved >= 1, "no MOVED seen");
	T_ASSERT(rs.map_refreshes >= 2, "map not reloaded after MOVED");
	T_ASSERT_EQ(rs.bad_values + rs.missing + rs.timeouts, 0);
	r_lazy_close(&l);

	/* A new store loads the new map: no redirects. */
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	T_ASSERT_EQ(r_stats(l.st).moved, 0);
	r_lazy_close(&l);
	return T_PASS;
}

/* A slot half-migrated: MGET gets TRYAGAIN, single GETs follow ASK. */
static int t_ask(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	struct r_lazy l;
	struct fl_redis_stats rs;
	static const size_t len[] = { 4 * U_MIB };
	unsigned slot, src, dst, moved;
	char url[128];
	(void)arg;

	r_require();
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[0], "ask");
	r_image_make(&im, "ask", 1, len, 101, NULL, 0);
	r_push(&im, url);
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);

	slot = chunk_slot("ask", im.id, 0, 0);
	src = (unsigned)r_slot_owner(s, 0, slot);
	dst = (src + 1) % R_NODES;
	r_slot_migrating(s, src, dst, slot);
	moved = r_migrate_keys(&s[src], &s[dst], slot, 256);
	t_log("slot %u: %u of 512 keys moved from node %u to %u", slot, moved, src, dst);
	T_ASSERT_EQ(moved, 256);

	U_CHECK(l.base, im.expect[0], 2 * U_MIB, R_PAGE);
	rs = r_stats(l.st);
	r_log_stats("half-migrated", &rs);
	T_ASSERT(rs.ask >= 1, "no ASK followed");
	T_ASSERT(rs.tryagain >= 1, "no TRYAGAIN seen");

	/* Finish the migration: the rest arrives through MOVED. */
	while (r_migrate_keys(&s[src], &s[dst], slot, 100))
		;
	r_slot_assign(s, dst, slot);
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	T_ASSERT_EQ(r_stats(l.st).bad_values + r_stats(l.st).missing, 0);
	r_lazy_close(&l);
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	r_lazy_close(&l);
	return T_PASS;
}

/* Push into a slot that is being migrated: MSET is refused (TRYAGAIN) and split into SETs that follow ASK. */
static int t_push_migrating(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	struct r_lazy l;
	static const size_t len[] = { 4 * U_MIB };
	unsigned slot, src, dst;
	char url[128];
	(void)arg;

	r_require();
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[2], "pm");
	r_image_make(&im, "pm", 1, len, 111, NULL, 0);
	slot = chunk_slot("pm", im.id, 0, 1);
	src = (unsigned)r_slot_owner(s, 0, slot);
	dst = (src + 2) % R_NODES;
	r_slot_migrating(s, src, dst, slot);
	r_push(&im, url);
	{
		/* Chunk 1's keys went to the importing node (the migrating one answers ASK). */
		char key[256];
		redisContext *c = r_conn_port(s[dst].port, 5000);
		redisReply *r;
		r_page_key(key, sizeof(key), "pm", im.id, 0, 600);
		r = r_cmd(&s[src], "EXISTS %s", key);
		T_ASSERT(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ASK ", 4) == 0,
			 "chunk 1 landed on the migrating node");
		freeReplyObject(r);
		T_ASSERT(c);
		freeReplyObject(redisCommand(c, "ASKING"));
		r = redisCommand(c, "EXISTS %s", key);
		T_ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "chunk 1 not on the importing node");
		freeReplyObject(r);
		redisFree(c);
	}
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	T_ASSERT(r_stats(l.st).ask >= 1);
	r_lazy_close(&l);
	r_slot_assign(s, dst, slot);
	r_lazy_open(&l, url, 0, t_scaled_ms(5000), 1, 0);
	U_CHECK(l.base, im.expect[0], len[0], R_PAGE);
	r_lazy_close(&l);
	return T_PASS;
}

/* ---- resharding while threads fault ----------------------------------------- */

struct reshard_reader {
	struct fl_store *st;
	struct fl_engine *e;
	const uint8_t *expect;
	size_t len;
	unsigned rounds;
	_Atomic bool done;
	long bad_page;
	unsigned bad_round;
};

static void *reshard_reader_main(void *arg)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	struct reshard_reader *rr = arg;
	rr->bad_page = -1;
	for (unsigned round = 0; round < rr->rounds && rr->bad_page < 0; round++) {
		struct fl_region_opts o = u_ropts(&anon, rr->len, rr->st, 0);
		struct fl_region *reg = NULL;
		const uint8_t *base;
		uint32_t *perm;
		if (fl_region_new(rr->e, &o, &reg)) {
			rr->bad_page = -2;
			break;
		}
		base = fl_region_addr(reg);
		perm = u_perm(rr->len / R_PAGE, round % 2 ? U_RANDOM : U_SEQ, round + 1);
		for (size_t i = 0; i < rr->len / R_PAGE; i++) {
			size_t p = perm[i];
			if (memcmp(base + p * R_PAGE, rr->expect + p * R_PAGE, R_PAGE)) {
				rr->bad_page = (long)p;
				rr->bad_round = round;
				break;
			}
		}
		free(perm);
		fl_region_free(reg);
	}
	atomic_store(&rr->done, true);
	return NULL;
}

static int t_reshard_under_load(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	struct reshard_reader rr[2];
	pthread_t tid[2];
	struct fl_redis_stats rs;
	struct fl_store *st;
	struct fl_engine *e;
	static const size_t len[] = { 8 * U_MIB };
	unsigned moves = 0, seed = 7;
	char url[128];
	(void)arg;

	r_require();
	r_cluster_start(s);
	r_url(url, sizeof(url), &s[0], "rs");
	r_image_make(&im, "rs", 1, len, 121, NULL, 0);
	r_push(&im, url);
	st = r_store(url, 0, t_scaled_ms(10000));
	e = u_engine(0, 2);
	/* Two threads restore the image again and again (new regions over one
	 * store), sequentially and in random order, while slots move. */
	for (unsigned i = 0; i < 2; i++) {
		rr[i] = (struct reshard_reader){ .st = st, .e = e, .expect = im.expect[0], .len = len[0],
						 .rounds = 6 };
		T_ASSERT(pthread_create(&tid[i], NULL, reshard_reader_main, &rr[i]) == 0);
	}
	while (!atomic_load(&rr[0].done) || !atomic_load(&rr[1].done)) {
		unsigned c = (unsigned)rand_r(&seed) % 4;
		unsigned slot = chunk_slot("rs", im.id, 0, c);
		unsigned owner = (unsigned)r_slot_owner(s, 0, slot);
		r_move_slot(s, slot, (owner + 1 + (unsigned)rand_r(&seed) % 2) % R_NODES);
		moves++;
		t_sleep_ms(5);
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(tid[i], NULL);
		T_ASSERT(rr[i].bad_page == -1, "reader %u: page %ld wrong in round %u", i, rr[i].bad_page,
			 rr[i].bad_round);
	}
	rs = r_stats(st);
	r_log_stats("reshard", &rs);
	t_log("%u slot moves during the restores", moves);
	T_ASSERT(moves >= 3);
	T_ASSERT(rs.moved + rs.ask >= 1, "no redirect seen");
	T_ASSERT_EQ(rs.bad_values + rs.missing + rs.timeouts, 0);
	fl_engine_free(e);
	fl_store_unref(st);
	return T_PASS;
}

/* A primary killed for good: its chunks get SIGBUS after the timeout, the others are served. */
static int t_node_killed(void *arg)
{
	struct r_server s[R_NODES];
	struct r_image im;
	struct r_lazy l;
	static const size_t len[] = { 12 * U_MIB };
	unsigned owner[6], victim, dead_chunks = 0;
	char url[128];
	(void)arg;

	r_require();
	u_bus_install();
	r_cluster_start(s);
	r_image_make(&im, "kill", 1, len, 131, NULL, 0);
	for (unsigned c = 0; c < 6; c++)
		owner[c] = (unsigned)r_slot_owner(s, 0, chunk_slot("kill", im.id, 0, c));
	/* The victim owns some chunks but not the description keys' slots. */
	victim = R_NODES;
	for (unsigned v = 0; v < R_NODES && victim == R_NODES; v++) {
		bool owns_chunk = false;
		for (unsigned c = 0; c < 6; c++)
			owns_chunk |= owner[c] == v;
		if (owns_chunk && (unsigned)r_slot_owner(s, 0, fl__cluster_keyslot("kill:meta", 9)) != v)
			victim = v;
	}
	T_ASSERT(victim < R_NODES);
	r_url(url, sizeof(url), &s[(victim + 1) % R_NODES], "kill");
	r_push(&im, url);
	r_lazy_open(&l, url, 0, t_scaled_ms(1000), 2, 0);
	r_kill(&s[victim]);
	for (unsigned c = 0; c < 6; c++) {
		const uint8_t *base = l.base + (size_t)c * 2 * U_MIB, *expect = im.expect[0] + (size_t)c * 2 * U_MIB;
		if (owner[c] == victim) {
			int v = u_probe_cmp(base + 5 * R_PAGE, expect + 5 * R_PAGE, R_PAGE);
			T_ASSERT(v == -1, "chunk %u on the dead node: %d, not SIGBUS", c, v);
			dead_chunks++;
		} else {
			U_CHECK(base, expect, 2 * U_MIB, R_PAGE);
		}
	}
	t_log("%u chunk(s) on the killed node %u", dead_chunks, victim);
	T_ASSERT(dead_chunks >= 1);
	{
		struct fl_redis_stats rs = r_stats(l.st);
		r_log_stats("killed", &rs);
		T_ASSERT(rs.timeouts >= 1);
		T_ASSERT_EQ(rs.bad_values + rs.missing, 0);
	}
	r_lazy_close(&l);
	return T_PASS;
}

/* opts.cluster against a single server: -EPROTO. */
static int t_cluster_required(void *arg)
{
	struct r_server srv;
	struct fl_redis_opts o;
	struct fl_store *st = NULL;
	char url[128];
	(void)arg;

	r_require();
	r_start(&srv, false);
	r_url(url, sizeof(url), &srv, "x");
	o = r_opts(url, 0, t_scaled_ms(2000));
	o.cluster = true;
	T_ASSERT_EQ(fl_store_redis_new(&o, &st), -EPROTO);
	T_ASSERT(st == NULL);
	r_kill(&srv);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "restore", t_restore, NULL, 120 },
	{ "keyslot-live", t_keyslot_live, NULL, 60 },
	{ "moved", t_moved, NULL, 120 },
	{ "ask", t_ask, NULL, 120 },
	{ "push-migrating", t_push_migrating, NULL, 120 },
	{ "reshard-under-load", t_reshard_under_load, NULL, 180 },
	{ "node-killed", t_node_killed, NULL, 120 },
	{ "cluster-required", t_cluster_required, NULL, 60 },
};

int main(int argc, char **argv)
{
	return r_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
