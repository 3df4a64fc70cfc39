// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The far-memory Redis store (fl_store_redis_far_new(), layout in
 * <faultline/redis.h>): pages written and read back under a prefix, each
 * value carrying a generation and a checksum. Routing, pipelining,
 * redirects (so writes land during a slot migration) and reconnects are
 * redis-cluster.c's; this file knows the values and the bookkeeping that
 * turns a lost or foreign write into an error instead of wrong memory.
 *
 * Generations: gen[page] is the generation this store last wrote or read
 * for the page (0: never seen). A write stores gen + 1. A write that
 * failed may or may not have reached the server, so the page's generation
 * becomes "gen or gen + 1" (GEN_UNSURE) until the next read or write
 * settles it.
 *
 * Flush and WAIT: WAIT counts the replicas that acknowledged the writes of
 * the connection it is sent on, and the connection pool spreads writes
 * over several. So flush sends, on one connection per primary, a SET of a
 * marker key in a chunk written since the last flush and then WAIT: the
 * marker is that primary's latest write, and replicas apply a primary's
 * stream in order, so its acknowledgement covers every earlier write.
 */
#include "redis-cluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#define RF_CHUNK_PAGES 512u
#define RF_MAGIC "FLRW"
#define RF_VERSION 1
#define RF_KIND_DATA 1
#define RF_KIND_ZERO 2
#define RF_KEY_MAX 300
#define RF_META_MAGIC "FLRWMETA"
#define GEN_UNSURE (1ull << 63)

struct rf_hdr {
	char magic[4];			/* "FLRW" */
	uint8_t version;
	uint8_t kind;			/* RF_KIND_* */
	uint16_t reserved;
	uint64_t page;			/* the page index: a value under another page's key is caught */
	uint64_t gen;			/* >= 1 */
	uint64_t csum;			/* XXH3-64 of this header (csum 0) and the page bytes */
} __attribute__((packed));
static_assert(sizeof(struct rf_hdr) == 32, "far value header layout");

struct rf_meta {
	char magic[8];
	uint64_t size;
	uint64_t csum;			/* XXH3-64 of the 16 bytes before */
} __attribute__((packed));

struct far_store {
	struct fl__cluster *rc;
	struct fl__logger log;
	char host[256];
	int port;
	char prefix[130];
	uint64_t npages;
	unsigned flags;
	unsigned timeout_ms;
	bool read_only;			/* the server is a replica */
	_Atomic uint64_t *gen;		/* per page, see above */
	pthread_mutex_t mu;		/* dirty, replicas */
	uint8_t *dirty;			/* per chunk: written since the last flush */
	int replicas[FL__CLUSTER_MAX_NODES];	/* expected per node; -1 unknown */
	_Atomic uint64_t pages_read, pages_written, write_errors, bad_values, missing, stale, waits;
};

static int page_key(const struct far_store *f, char *out, uint64_t page)
{
	int n = snprintf(out, RF_KEY_MAX, "%s:far:{%s:%llu}:%llu", f->prefix, f->prefix,
			 (unsigned long long)(page / RF_CHUNK_PAGES), (unsigned long long)page);
	return n > 0 && n < RF_KEY_MAX ? n : -ENAMETOOLONG;
}

static int marker_key(const struct far_store *f, char *out, uint64_t chunk)
{
	int n = snprintf(out, RF_KEY_MAX, "%s:far:{%s:%llu}:flush", f->prefix, f->prefix,
			 (unsigned long long)chunk);
	return n > 0 && n < RF_KEY_MAX ? n : -ENAMETOOLONG;
}

/* The header's hash seeds the bytes' hash: one checksum over both, no copy. */
static uint64_t value_csum(const struct rf_hdr *h, const void *data)
{
	struct rf_hdr c = *h;
	uint64_t hc;

	c.csum = 0;
	hc = XXH3_64bits(&c, sizeof(c));
	return data ? XXH3_64bits_withSeed(data, FL_PAGE_SIZE, hc) : hc;
}

static bool all_zero(const uint8_t *p)
{
	return p[0] == 0 && !memcmp(p, p + 1, FL_PAGE_SIZE - 1);
}

/* ---- reading --------------------------------------------------------------- */

/*
 * Check a value for `page` and copy its bytes to dst. Returns 0, or -EIO
 * (not a well-formed value of this page: corrupt, truncated, misplaced);
 * *ret_gen gets its generation.
 */
static int value_check(const char *str, size_t len, uint64_t page, uint8_t *dst, uint64_t *ret_gen)
{
	struct rf_hdr h;

	if (len < sizeof(h))
		return -EIO;
	memcpy(&h, str, sizeof(h));
	if (memcmp(h.magic, RF_MAGIC, 4) || h.version != RF_VERSION || h.reserved || h.page != page || !h.gen ||
	    h.gen & GEN_UNSURE)
		return -EIO;
	if (h.kind == RF_KIND_ZERO) {
		if (len != sizeof(h) || value_csum(&h, NULL) != h.csum)
			return -EIO;
		memset(dst, 0, FL_PAGE_SIZE);
	} else if (h.kind == RF_KIND_DATA) {
		if (len != sizeof(h) + FL_PAGE_SIZE || value_csum(&h, str + sizeof(h)) != h.csum)
			return -EIO;
		memcpy(dst, str + sizeof(h), FL_PAGE_SIZE);
	} else {
		return -EIO;
	}
	*ret_gen = h.gen;
	return 0;
}

/* A value of generation v was read for page: is it the one this store expects? */
static int gen_seen(struct far_store *f, uint64_t page, uint64_t v)
{
	uint64_t k = atomic_load(&f->gen[page]), base = k & ~GEN_UNSURE;

	if (!k || v == base || ((k & GEN_UNSURE) && v == base + 1)) {
		/* Settled: never seen, the one written, or an unsure write that landed (or not). */
		atomic_compare_exchange_strong(&f->gen[page], &k, v);
		return 0;
	}
	atomic_fetch_add(&f->stale, 1);
	fl__log(&f->log, FL_LOG_ERROR, "redis far %s: page %llu has generation %llu, this store wrote %llu: "
		"another writer, or the server lost a write", f->prefix, (unsigned long long)page,
		(unsigned long long)v, (unsigned long long)base);
	return -ESTALE;
}

/* A page without a key. */
static int missing_page(struct far_store *f, uint64_t page, uint8_t *dst)
{
	uint64_t k = atomic_load(&f->gen[page]);

	atomic_fetch_add(&f->missing, 1);
	/* Never written here (or only by a write that failed before
	 * anything reached the server): a new store's page. */
	if ((k == 0 || k == GEN_UNSURE) && (f->flags & FL_REDIS_FAR_ZERO_MISSING)) {
		memset(dst, 0, FL_PAGE_SIZE);
		return 0;
	}
	if (k) {
		fl__log(&f->log, FL_LOG_ERROR, "redis far %s: page %llu was written (generation %llu) and is gone "
			"from the server", f->prefix, (unsigned long long)page, (unsigned long long)(k & ~GEN_UNSURE));
		return -EIO;
	}
	return -ENODATA;
}

/* Point the k commands at their pieces of b (command c starts at off[c])
 * and run them, unless building b failed. */
static void run_cmds(struct far_store *f, const struct fl__resp *b, struct fl__cluster_cmd *cmds, const size_t *off,
		     size_t k, bool urgent)
{
	if (b->err || !k)
		return;
	for (size_t c = 0; c < k; c++) {
		cmds[c].buf = b->buf + off[c];
		cmds[c].len = (c + 1 < k ? off[c + 1] : b->len) - off[c];
	}
	fl__cluster_run(f->rc, cmds, (unsigned)k, urgent);
}

static int far_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct far_store *f = ctx;
	struct fl__resp b = { 0 };
	struct fl__cluster_cmd *cmds;
	size_t *off, total = 0, k = 0;
	char key[RF_KEY_MAX];
	bool urgent = false;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		if (iov[i].offset % FL_PAGE_SIZE || iov[i].len % FL_PAGE_SIZE)
			iov[i].result = -EINVAL;
		else
			total += iov[i].len / FL_PAGE_SIZE;
		urgent |= iov[i].flags_in & FL_STORE_IN_URGENT;
	}
	cmds = calloc(total ? total : 1, sizeof(*cmds));
	off = calloc(total + 1, sizeof(*off));
	if (!cmds || !off) {
		free(cmds);
		free(off);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].result)
			continue;
		for (uint64_t p = iov[i].offset / FL_PAGE_SIZE; p < (iov[i].offset + iov[i].len) / FL_PAGE_SIZE; p++) {
			int kl = page_key(f, key, p);
			if (kl < 0) {
				b.err = kl;
				break;
			}
			off[k] = b.len;
			fl__resp_array(&b, 2);
			fl__resp_arg(&b, "GET", 3);
			fl__resp_arg(&b, key, (size_t)kl);
			cmds[k++].slot = (int)fl__cluster_keyslot(key, (size_t)kl);
		}
	}
	run_cmds(f, &b, cmds, off, k, urgent);
	k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].result) {
			err = err ? err : iov[i].result;
			continue;
		}
		for (uint64_t p = iov[i].offset / FL_PAGE_SIZE; p < (iov[i].offset + iov[i].len) / FL_PAGE_SIZE;
		     p++, k++) {
			uint8_t *dst = (uint8_t *)iov[i].buf + (p * FL_PAGE_SIZE - iov[i].offset);
			const redisReply *rep = cmds[k].reply;
			uint64_t v;
			int r;

			if (b.err)
				r = b.err;
			else if (cmds[k].result)
				r = cmds[k].result;
			else if (rep->type == REDIS_REPLY_NIL)
				r = missing_page(f, p, dst);
			else if (rep->type != REDIS_REPLY_STRING)
				r = -EIO;
			else if ((r = value_check(rep->str, rep->len, p, dst, &v)) == 0)
				r = gen_seen(f, p, v);
			else {
				atomic_fetch_add(&f->bad_values, 1);
				fl__log(&f->log, FL_LOG_ERROR, "redis far %s: page %llu: corrupt value", f->prefix,
					(unsigned long long)p);
			}
			if (!r)
				atomic_fetch_add(&f->pages_read, 1);
			if (r && !iov[i].result)
				iov[i].result = r;
		}
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	for (size_t c = 0; c < k; c++)
		if (cmds[c].reply)
			freeReplyObject(cmds[c].reply);
	fl__resp_free(&b);
	free(cmds);
	free(off);
	return err;
}

/* ---- writing --------------------------------------------------------------- */

/* The errno for a SET's reply. */
static int set_result(const struct far_store *f, const struct fl__cluster_cmd *c, uint64_t page)
{
	const redisReply *rep = c->reply;

	if (c->result)
		return c->result;
	if (rep->type == REDIS_REPLY_STATUS)
		return 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		fl__log(&f->log, FL_LOG_ERROR, "redis far %s: SET of page %llu: %s", f->prefix,
			(unsigned long long)page, rep->str);
		if (fl__cluster_reply_is(rep, "READONLY"))
			return -EROFS;
		if (fl__cluster_reply_is(rep, "OOM"))
			return -ENOSPC;
	}
	return -EIO;
}

static int far_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct far_store *f = ctx;
	struct fl__resp b = { 0 };
	struct fl__cluster_cmd *cmds;
	uint64_t *gens;
	size_t *off, total = 0, k = 0;
	char key[RF_KEY_MAX];
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		if (f->read_only)
			iov[i].result = -EROFS;
		else if (iov[i].offset % FL_PAGE_SIZE || iov[i].len % FL_PAGE_SIZE)
			iov[i].result = -EINVAL;
		else
			total += iov[i].len / FL_PAGE_SIZE;
	}
	cmds = calloc(total ? total : 1, sizeof(*cmds));
	off = calloc(total + 1, sizeof(*off));
	gens = calloc(total ? total : 1, sizeof(*gens));
	if (!cmds || !off || !gens) {
		free(cmds);
		free(off);
		free(gens);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n && !b.err; i++) {
		if (iov[i].result)
			continue;
		for (uint64_t p = iov[i].offset / FL_PAGE_SIZE; p < (iov[i].offset + iov[i].len) / FL_PAGE_SIZE; p++) {
			const uint8_t *src = (const uint8_t *)iov[i].buf + (p * FL_PAGE_SIZE - iov[i].offset);
			bool zero = all_zero(src);
			struct rf_hdr h = { .version = RF_VERSION, .kind = zero ? RF_KIND_ZERO : RF_KIND_DATA,
					    .page = p };
			size_t at;
			int kl = page_key(f, key, p);

			if (kl < 0) {
				b.err = kl;
				break;
			}
			memcpy(h.magic, RF_MAGIC, 4);
			h.gen = (atomic_load(&f->gen[p]) & ~GEN_UNSURE) + 1;
			h.csum = value_csum(&h, zero ? NULL : src);
			gens[k] = h.gen;
			off[k] = b.len;
			fl__resp_array(&b, 3);
			fl__resp_arg(&b, "SET", 3);
			fl__resp_arg(&b, key, (size_t)kl);
			at = fl__resp_arg_reserve(&b, sizeof(h) + (zero ? 0 : FL_PAGE_SIZE));
			if (b.err)
				break;
			memcpy(b.buf + at, &h, sizeof(h));
			if (!zero)
				memcpy(b.buf + at + sizeof(h), src, FL_PAGE_SIZE);
			cmds[k++].slot = (int)fl__cluster_keyslot(key, (size_t)kl);
		}
	}
	run_cmds(f, &b, cmds, off, k, false);
	k = 0;
	pthread_mutex_lock(&f->mu);
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].result) {
			err = err ? err : iov[i].result;
			continue;
		}
		for (uint64_t p = iov[i].offset / FL_PAGE_SIZE; p < (iov[i].offset + iov[i].len) / FL_PAGE_SIZE;
		     p++, k++) {
			int r = b.err ? b.err : set_result(f, &cmds[k], p);
			if (!r) {
				atomic_store(&f->gen[p], gens[k]);
				atomic_fetch_add(&f->pages_written, 1);
			} else {
				if (!b.err)
					atomic_store(&f->gen[p], (gens[k] - 1) | GEN_UNSURE);
				atomic_fetch_add(&f->write_errors, 1);
			}
			/* Even a failed SET may have landed: flush waits for it too. */
			f->dirty[p / RF_CHUNK_PAGES] = 1;
			if (r && !iov[i].result)
				iov[i].result = r;
		}
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	pthread_mutex_unlock(&f->mu);
	for (size_t c = 0; c < k; c++)
		if (cmds[c].reply)
			freeReplyObject(cmds[c].reply);
	fl__resp_free(&b);
	free(cmds);
	free(off);
	free(gens);
	return err;
}

/* ---- flushing -------------------------------------------------------------- */

/* connected_slaves of an INFO replication reply; -1 when absent. */
static int parse_replicas(const redisReply *rep, bool *ret_replica)
{
	const char *p;

	if (!rep || rep->type != REDIS_REPLY_STRING)
		return -1;
	if (ret_replica)
		*ret_replica = strstr(rep->str, "role:slave") != NULL;
	p = strstr(rep->str, "connected_slaves:");
	return p ? atoi(p + strlen("connected_slaves:")) : -1;
}

static const char info_cmd[] = "*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n";

/*
 * WAIT on every primary that has replicas and was written since the last
 * flush. Chunks of a primary that did not get its acknowledgements stay
 * dirty for the next flush.
 */
static int far_flush(void *ctx)
{
	struct far_store *f = ctx;
	uint64_t nchunks = (f->npages + RF_CHUNK_PAGES - 1) / RF_CHUNK_PAGES;
	uint64_t rep_chunk[FL__CLUSTER_MAX_NODES];
	bool have[FL__CLUSTER_MAX_NODES] = { false }, unmapped = false;
	struct fl__cluster_cmd cmds[3 * FL__CLUSTER_MAX_NODES];
	struct fl__resp b = { 0 };
	unsigned nodes[FL__CLUSTER_MAX_NODES], nn = 0, nc = 0;
	size_t off[3 * FL__CLUSTER_MAX_NODES + 1];
	char key[RF_KEY_MAX], wait_arg[2][24];
	int err = 0;

	if (f->read_only)
		return -EROFS;
	/* One written chunk per primary: its marker key routes there. */
	pthread_mutex_lock(&f->mu);
	for (uint64_t c = 0; c < nchunks; c++) {
		int kl, node;
		if (!f->dirty[c])
			continue;
		kl = marker_key(f, key, c);
		node = kl < 0 ? -1 : fl__cluster_slot_node(f->rc, fl__cluster_keyslot(key, (size_t)kl));
		if (node < 0) {
			unmapped = true;	/* the map is being refreshed: wait on it next time */
			continue;
		}
		if (!have[node]) {
			have[node] = true;
			rep_chunk[node] = c;
			nodes[nn++] = (unsigned)node;
		}
		f->dirty[c] = 0;
	}
	pthread_mutex_unlock(&f->mu);
	if (unmapped)
		err = -EAGAIN;

	/* Replicas a primary is expected to have: learned once, so one lost
	 * later fails the flush instead of lowering the bar. */
	for (unsigned i = 0; i < nn; i++) {
		if (f->replicas[nodes[i]] >= 0)
			continue;
		marker_key(f, key, rep_chunk[nodes[i]]);
		cmds[nc] = (struct fl__cluster_cmd){ .buf = info_cmd, .len = sizeof(info_cmd) - 1,
						     .slot = (int)fl__cluster_keyslot(key, strlen(key)) };
		nc++;
	}
	if (nc) {
		unsigned k = 0;
		fl__cluster_run(f->rc, cmds, nc, false);
		for (unsigned i = 0; i < nn; i++) {
			if (f->replicas[nodes[i]] >= 0)
				continue;
			f->replicas[nodes[i]] = cmds[k].result ? -1 : parse_replicas(cmds[k].reply, NULL);
			if (f->replicas[nodes[i]] < 0)
				err = err ? err : (cmds[k].result ? cmds[k].result : -EIO);
			if (cmds[k].reply)
				freeReplyObject(cmds[k].reply);
			k++;
		}
		nc = 0;
	}

	/* Per primary with replicas: SET marker, WAIT replicas timeout, pipelined on one connection. */
	snprintf(wait_arg[1], sizeof(wait_arg[1]), "%u", FL_MAX(f->timeout_ms / 2, 1u));
	for (unsigned i = 0; i < nn; i++) {
		int replicas = f->replicas[nodes[i]], kl, slot;
		if (replicas <= 0)
			continue;
		kl = marker_key(f, key, rep_chunk[nodes[i]]);
		slot = (int)fl__cluster_keyslot(key, (size_t)kl);
		off[nc] = b.len;
		fl__resp_array(&b, 3);
		fl__resp_arg(&b, "SET", 3);
		fl__resp_arg(&b, key, (size_t)kl);
		fl__resp_arg(&b, "1", 1);
		cmds[nc++] = (struct fl__cluster_cmd){ .slot = slot };
		snprintf(wait_arg[0], sizeof(wait_arg[0]), "%d", replicas);
		off[nc] = b.len;
		fl__resp_array(&b, 3);
		fl__resp_arg(&b, "WAIT", 4);
		fl__resp_arg(&b, wait_arg[0], strlen(wait_arg[0]));
		fl__resp_arg(&b, wait_arg[1], strlen(wait_arg[1]));
		cmds[nc++] = (struct fl__cluster_cmd){ .slot = slot };
	}
	if (b.err) {
		err = b.err;
		nc = 0;
	}
	if (nc) {
		for (unsigned c = 0; c < nc; c++) {
			cmds[c].buf = b.buf + off[c];
			cmds[c].len = (c + 1 < nc ? off[c + 1] : b.len) - off[c];
		}
		fl__cluster_run(f->rc, cmds, nc, false);
	}
	for (unsigned i = 0, c = 0; i < nn; i++) {
		int replicas = f->replicas[nodes[i]], r = 0;
		if (replicas <= 0)
			continue;
		if (!nc) {
			r = err;
		} else if (cmds[c].result || cmds[c + 1].result) {
			r = cmds[c].result ? cmds[c].result : cmds[c + 1].result;
		} else if (cmds[c + 1].reply->type != REDIS_REPLY_INTEGER) {
			fl__log(&f->log, FL_LOG_ERROR, "redis far %s: WAIT: %s", f->prefix,
				cmds[c + 1].reply->type == REDIS_REPLY_ERROR ? cmds[c + 1].reply->str : "not a number");
			r = -EIO;
		} else {
			atomic_fetch_add(&f->waits, 1);
			if (cmds[c + 1].reply->integer < replicas) {
				fl__log(&f->log, FL_LOG_ERROR, "redis far %s: WAIT: %lld of %d replica(s) acknowledged "
					"within %s ms", f->prefix, cmds[c + 1].reply->integer, replicas, wait_arg[1]);
				r = -EIO;
			}
		}
		if (r) {
			/* Not durable there: the next flush waits for it again. */
			pthread_mutex_lock(&f->mu);
			f->dirty[rep_chunk[nodes[i]]] = 1;
			pthread_mutex_unlock(&f->mu);
			err = err ? err : r;
		}
		c += 2;
	}
	for (unsigned c = 0; c < nc; c++)
		if (cmds[c].reply)
			freeReplyObject(cmds[c].reply);
	fl__resp_free(&b);
	return err;
}

/* ---- ctl, lifetime ------------------------------------------------------- */

static int far_ctl(void *ctx, int op, void *arg)
{
	struct far_store *f = ctx;
	struct fl_redis_stats st = { 0 }, *out = arg;
	int r;

	if (op == FL_STORE_CTL_WRITABLE)
		return !f->read_only;
	if (op != FL_REDIS_CTL_STATS)
		return -EOPNOTSUPP;
	r = fl__opts_out_check(out);
	if (r)
		return r;
	fl__cluster_stats(f->rc, &st);
	st.sz = sizeof(st);
	st.pages_read = atomic_load(&f->pages_read);
	st.bad_values = atomic_load(&f->bad_values);
	st.missing = atomic_load(&f->missing);
	st.pages_written = atomic_load(&f->pages_written);
	st.write_errors = atomic_load(&f->write_errors);
	st.stale = atomic_load(&f->stale);
	st.waits = atomic_load(&f->waits);
	return FL_OPTS_OUT(out, st);
}

static void far_destroy(void *ctx)
{
	struct far_store *f = ctx;

	fl__cluster_free(f->rc);
	pthread_mutex_destroy(&f->mu);
	free((void *)f->gen);
	free(f->dirty);
	free(f);
}

static const struct fl_store_ops far_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "redis-far",
	.read = far_read,
	.write = far_write,
	.flush = far_flush,
	.ctl = far_ctl,
	.destroy = far_destroy,
};

/*
 * The size recorded under PREFIX:far:meta: set when absent, else it must
 * be ours (two stores of different sizes over one prefix would read each
 * other's pages as their own). A single server that is a replica is
 * noted: it cannot take writes.
 */
static int meta_check(struct far_store *f, uint64_t size)
{
	char key[RF_KEY_MAX];
	struct rf_meta m = { .size = size };
	struct fl__resp b = { 0 };
	struct fl__cluster_cmd cmds[2] = { 0 };
	size_t off1;
	int kl, r;
	bool replica = false;

	memcpy(m.magic, RF_META_MAGIC, 8);
	m.csum = XXH3_64bits(&m, 16);
	kl = snprintf(key, sizeof(key), "%s:far:meta", f->prefix);
	if (kl <= 0 || kl >= (int)sizeof(key))
		return -EINVAL;
	/* SET NX GET is Redis 7; SET NX then GET works everywhere. */
	fl__resp_array(&b, 4);
	fl__resp_arg(&b, "SET", 3);
	fl__resp_arg(&b, key, (size_t)kl);
	fl__resp_arg(&b, &m, sizeof(m));
	fl__resp_arg(&b, "NX", 2);
	off1 = b.len;
	fl__resp_array(&b, 2);
	fl__resp_arg(&b, "GET", 3);
	fl__resp_arg(&b, key, (size_t)kl);
	if (b.err) {
		r = b.err;
		fl__resp_free(&b);
		return r;
	}
	cmds[0] = (struct fl__cluster_cmd){ .buf = b.buf, .len = off1,
					    .slot = (int)fl__cluster_keyslot(key, (size_t)kl) };
	cmds[1] = (struct fl__cluster_cmd){ .buf = b.buf + off1, .len = b.len - off1, .slot = cmds[0].slot };
	r = fl__cluster_run(f->rc, cmds, 2, true);
	if (!r && cmds[0].reply->type == REDIS_REPLY_ERROR && fl__cluster_reply_is(cmds[0].reply, "READONLY")) {
		/* A replica: it still serves reads of what its primary wrote. */
		replica = true;
	} else if (!r && cmds[0].reply->type == REDIS_REPLY_ERROR) {
		fl__log(&f->log, FL_LOG_ERROR, "redis far %s: SET %s: %s", f->prefix, key, cmds[0].reply->str);
		r = -EPROTO;
	}
	if (!r) {
		const redisReply *g = cmds[1].reply;
		struct rf_meta got;
		if (g->type == REDIS_REPLY_NIL && replica) {
			r = -ENOENT;	/* nothing to read, and no way to write */
		} else if (g->type != REDIS_REPLY_STRING || g->len != sizeof(got)) {
			r = -EPROTO;
		} else {
			memcpy(&got, g->str, sizeof(got));
			if (memcmp(got.magic, RF_META_MAGIC, 8) || XXH3_64bits(&got, 16) != got.csum) {
				fl__log(&f->log, FL_LOG_ERROR, "redis far %s: %s is not a far store's", f->prefix, key);
				r = -EPROTO;
			} else if (got.size != size) {
				fl__log(&f->log, FL_LOG_ERROR, "redis far %s: holds a far store of %llu bytes, not %llu",
					f->prefix, (unsigned long long)got.size, (unsigned long long)size);
				r = -EINVAL;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (cmds[i].reply)
			freeReplyObject(cmds[i].reply);
	fl__resp_free(&b);
	if (!r && !fl__cluster_is_cluster(f->rc)) {
		/* Replicas of a single server: `replica` from INFO too (a
		 * replica with replica-read-only no still is one). */
		struct fl__cluster_cmd c = { .buf = info_cmd, .len = sizeof(info_cmd) - 1, .slot = -1 };
		if (fl__cluster_run(f->rc, &c, 1, true) == 0) {
			bool is_replica = false;
			f->replicas[0] = parse_replicas(c.reply, &is_replica);
			replica |= is_replica;
		}
		if (c.reply)
			freeReplyObject(c.reply);
	}
	f->read_only = replica;
	return r;
}

int fl_store_redis_far_new(const struct fl_redis_opts *opts, uint64_t size, unsigned flags,
			   struct fl_store **ret_store)
{
	struct fl_redis_opts o;
	struct far_store *f;
	int r;

	if (!opts || !ret_store || !size || size % FL_PAGE_SIZE || size > (1ull << 46) ||
	    (flags & ~FL_REDIS_FAR_ZERO_MISSING))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->mu, NULL);
	for (unsigned i = 0; i < FL__CLUSTER_MAX_NODES; i++)
		f->replicas[i] = -1;
	f->npages = size / FL_PAGE_SIZE;
	f->flags = flags;
	f->gen = calloc(f->npages, sizeof(*f->gen));
	f->dirty = calloc((f->npages + RF_CHUNK_PAGES - 1) / RF_CHUNK_PAGES, 1);
	if (!f->gen || !f->dirty) {
		r = -ENOMEM;
		goto fail;
	}
	r = fl__redis_connect(opts, &o, f->host, sizeof(f->host), &f->port, f->prefix, sizeof(f->prefix), &f->rc);
	if (r)
		goto fail;
	if (o.region || o.image_id) {
		r = -EINVAL;
		goto fail;
	}
	f->log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = o.log_level };
	f->timeout_ms = o.timeout_ms ? o.timeout_ms : 5000;
	r = meta_check(f, size);
	if (r)
		goto fail;
	r = fl_store_new(&far_ops, f, size, ret_store);
	if (r)
		goto fail;
	fl__log(&f->log, FL_LOG_INFO, "redis far store: %llu pages at %s:%d/%s%s%s", (unsigned long long)f->npages,
		f->host, f->port, f->prefix, fl__cluster_is_cluster(f->rc) ? " (cluster)" : "",
		f->read_only ? " (read-only replica)" : "");
	return 0;
fail:
	far_destroy(f);
	return r;
}
