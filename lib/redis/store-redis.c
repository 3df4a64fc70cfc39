// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis store and image push (see <faultline/redis.h> for the key
 * layout). Routing, pipelining, redirects and reconnects live in
 * redis-cluster.c; this file knows the keys and values and checks every
 * value it is given: a page is delivered only when its header names the
 * image, region and page that were asked for and its bytes match the
 * checksum. Anything else fails the read so the engine poisons the page.
 */
#include "redis-cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#define RS_CHUNK_PAGES 512u		/* pages per hash tag: 2 MiB */
#define RS_VALUE_MAGIC "FLRP"
#define RS_VALUE_VERSION 1
#define RS_META_MAGIC "FLRDMETA"
#define RS_META_VERSION 1
#define RS_MAX_REGIONS 65536u
#define RS_PUSH_BATCH 8			/* chunks (MSETs) in flight per round trip */
#define RS_KEY_MAX 256
#define RS_VERIFY_RETRIES 2		/* re-reads of a value that failed verification */

/* A page value: this header, then the page bytes (none for a zero page). */
struct rs_value_hdr {
	char magic[4];			/* "FLRP" */
	uint8_t version;
	uint8_t kind;			/* FL_PAGE_ZERO or FL_PAGE_DATA */
	uint16_t reserved;
	uint32_t region;
	uint32_t reserved2;
	uint64_t page;			/* page index in the region */
	uint64_t csum;			/* XXH3-64 of the page bytes; 0 for a zero page */
	uint8_t id[FL_IMAGE_ID_LEN];	/* the image's content id */
	uint64_t hdr_csum;		/* XXH3-64 of this header with hdr_csum = 0 */
} __attribute__((packed));

/* The image description: this header, nregions region records, an XXH3-64 of all before it. */
struct rs_meta_hdr {
	char magic[8];			/* "FLRDMETA" */
	uint32_t version;
	uint32_t page_size;
	uint32_t nregions;
	uint32_t chunk_pages;
	uint8_t id[FL_IMAGE_ID_LEN];
	uint64_t pushed_ns;		/* CLOCK_REALTIME of the push */
	uint64_t pages_data, pages_zero, pages_absent;
	uint64_t reserved[4];
} __attribute__((packed));

struct rs_meta_region {
	uint64_t start;
	uint64_t length;
	uint32_t prot;
	uint32_t mem;
	char name[64];
} __attribute__((packed));

static_assert(sizeof(struct rs_value_hdr) == 56, "value header layout");
static_assert(sizeof(struct rs_meta_hdr) == 104, "meta header layout");
static_assert(sizeof(struct rs_meta_region) == 88, "meta region layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "values are little-endian; add byte swapping for big-endian hosts");

/* ---- keys, values, descriptions ---------------------------------------- */

struct rs_space {
	char host[256];
	int port;
	char prefix[130];
};

static int page_key(char *out, size_t len, const char *prefix, const char *idhex, unsigned region,
		    uint64_t page)
{
	int n = snprintf(out, len, "%s:{%s:%u:%llu}:%llu", prefix, idhex, region,
			 (unsigned long long)(page / RS_CHUNK_PAGES), (unsigned long long)page);
	return n > 0 && (size_t)n < len ? n : -ENAMETOOLONG;
}

static int meta_key(char *out, size_t len, const char *prefix, const char *idhex)
{
	int n = idhex ? snprintf(out, len, "%s:%s:meta", prefix, idhex) : snprintf(out, len, "%s:meta", prefix);
	return n > 0 && (size_t)n < len ? n : -ENAMETOOLONG;
}

static uint64_t value_hdr_csum(const struct rs_value_hdr *h)
{
	struct rs_value_hdr c = *h;
	c.hdr_csum = 0;
	return XXH3_64bits(&c, sizeof(c));
}

static void value_hdr_fill(struct rs_value_hdr *h, const uint8_t id[FL_IMAGE_ID_LEN], unsigned region,
			   uint64_t page, const void *data)
{
	*h = (struct rs_value_hdr){ .version = RS_VALUE_VERSION, .region = region, .page = page };
	memcpy(h->magic, RS_VALUE_MAGIC, 4);
	memcpy(h->id, id, FL_IMAGE_ID_LEN);
	h->kind = data ? FL_PAGE_DATA : FL_PAGE_ZERO;
	h->csum = data ? XXH3_64bits(data, FL_PAGE_SIZE) : 0;
	h->hdr_csum = value_hdr_csum(h);
}

/* A parsed, verified description. */
struct rs_meta {
	uint8_t id[FL_IMAGE_ID_LEN];
	uint32_t nregions;
	struct rs_meta_region *regions;
};

static int meta_parse(const char *buf, size_t len, struct rs_meta *ret)
{
	struct rs_meta_hdr h;
	uint64_t csum;
	size_t need;

	if (len < sizeof(h) + sizeof(csum))
		return -EBADMSG;
	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, RS_META_MAGIC, 8))
		return -EBADMSG;
	if (h.version != RS_META_VERSION)
		return -EPROTO;
	if (h.page_size != FL_PAGE_SIZE || h.chunk_pages != RS_CHUNK_PAGES || h.nregions > RS_MAX_REGIONS)
		return -EBADMSG;
	need = sizeof(h) + (size_t)h.nregions * sizeof(struct rs_meta_region) + sizeof(csum);
	if (len != need)
		return -EBADMSG;
	memcpy(&csum, buf + len - sizeof(csum), sizeof(csum));
	if (XXH3_64bits(buf, len - sizeof(csum)) != csum)
		return -EBADMSG;
	ret->regions = calloc(h.nregions ? h.nregions : 1, sizeof(*ret->regions));
	if (!ret->regions)
		return -ENOMEM;
	memcpy(ret->regions, buf + sizeof(h), (size_t)h.nregions * sizeof(struct rs_meta_region));
	for (uint32_t i = 0; i < h.nregions; i++) {
		if (ret->regions[i].length % FL_PAGE_SIZE || !memchr(ret->regions[i].name, 0, 64)) {
			free(ret->regions);
			ret->regions = NULL;
			return -EBADMSG;
		}
	}
	memcpy(ret->id, h.id, FL_IMAGE_ID_LEN);
	ret->nregions = h.nregions;
	return 0;
}

int fl__redis_meta_check(const char *buf, size_t len, uint8_t ret_id[FL_IMAGE_ID_LEN], uint32_t *ret_nregions)
{
	struct rs_meta m;
	int r = meta_parse(buf, len, &m);

	if (r)
		return r;
	memcpy(ret_id, m.id, FL_IMAGE_ID_LEN);
	*ret_nregions = m.nregions;
	free(m.regions);
	return 0;
}

static void log_setup(struct fl__logger *lg, const struct fl_redis_opts *o)
{
	lg->fn = o->log;
	lg->ctx = o->log_ctx;
	lg->level = o->log_level;
}

int fl__redis_connect(const struct fl_redis_opts *opts, struct fl_redis_opts *o, char *host, size_t host_len,
		      int *port, char *prefix, size_t prefix_len, struct fl__cluster **ret_rc)
{
	struct fl__cluster_opts ro = { 0 };
	int r;

	if (!opts)
		return -EINVAL;
	r = FL_OPTS_COPY(*o, opts);
	if (r)
		return r;
	if (!o->url)
		return -EINVAL;
	r = fl__redis_url_parse(o->url, host, host_len, port, prefix, prefix_len);
	if (r)
		return r;
	ro.host = host;
	ro.port = *port;
	ro.timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
	ro.connections = o->connections ? o->connections : 4;
	ro.require_cluster = o->cluster;
	log_setup(&ro.log, o);
	return fl__cluster_new(&ro, ret_rc);
}

/* Copy the caller's options, parse the URL and connect. */
static int connect_opts(const struct fl_redis_opts *opts, struct fl_redis_opts *o, struct rs_space *sp,
			struct fl__cluster **ret_rc)
{
	return fl__redis_connect(opts, o, sp->host, sizeof(sp->host), &sp->port, sp->prefix, sizeof(sp->prefix),
				 ret_rc);
}

/* One single-key command encoded in *b at its current end; its slot. */
static int encode_get(struct fl__resp *b, const char *key, size_t klen)
{
	fl__resp_array(b, 2);
	fl__resp_arg(b, "GET", 3);
	fl__resp_arg(b, key, klen);
	return (int)fl__cluster_keyslot(key, klen);
}

/*
 * Read and verify the description (opts->image_id's, or the latest).
 * -ENOENT: nothing under the prefix; -ESTALE: another image than the one asked for.
 */
static int meta_load(struct fl__cluster *rc, const struct rs_space *sp, const uint8_t *want_id,
		     const struct fl__logger *lg, struct rs_meta *ret)
{
	char idhex[2 * FL_IMAGE_ID_LEN + 1], key[2][RS_KEY_MAX];
	struct fl__resp b = { 0 };
	struct fl__cluster_cmd cmds[2] = { 0 };
	size_t off[2];
	int r, klen[2];

	if (want_id)
		fl_image_id_format(want_id, idhex);
	klen[0] = meta_key(key[0], sizeof(key[0]), sp->prefix, want_id ? idhex : NULL);
	klen[1] = meta_key(key[1], sizeof(key[1]), sp->prefix, NULL);
	if (klen[0] < 0 || klen[1] < 0)
		return -EINVAL;
	for (int i = 0; i < 2; i++) {
		off[i] = b.len;
		cmds[i].slot = encode_get(&b, key[i], (size_t)klen[i]);
	}
	if (b.err) {
		r = b.err;
		fl__resp_free(&b);
		return r;
	}
	for (int i = 0; i < 2; i++) {
		cmds[i].buf = b.buf + off[i];
		cmds[i].len = (i ? b.len : off[1]) - off[i];
	}
	r = fl__cluster_run(rc, cmds, want_id ? 2 : 1, true);
	if (!r) {
		const redisReply *m = cmds[0].reply;
		if (m->type == REDIS_REPLY_NIL) {
			/* With an id: is there another image under the prefix? */
			r = want_id && cmds[1].reply->type == REDIS_REPLY_STRING ? -ESTALE : -ENOENT;
		} else if (m->type != REDIS_REPLY_STRING) {
			fl__log(lg, FL_LOG_ERROR, "redis: GET %s: %s", key[0],
				m->type == REDIS_REPLY_ERROR ? m->str : "unexpected reply");
			r = -EPROTO;
		} else {
			r = meta_parse(m->str, m->len, ret);
			if (!r && want_id && memcmp(ret->id, want_id, FL_IMAGE_ID_LEN)) {
				free(ret->regions);
				ret->regions = NULL;
				r = -EBADMSG;	/* the id's key names another image */
			}
			if (r)
				fl__log(lg, FL_LOG_ERROR, "redis: %s: corrupt image description", key[0]);
		}
	}
	for (int i = 0; i < 2; i++)
		if (cmds[i].reply)
			freeReplyObject(cmds[i].reply);
	fl__resp_free(&b);
	return r;
}

/* ---- the store --------------------------------------------------------- */

struct redis_store {
	struct fl__cluster *rc;
	struct fl__logger log;
	struct rs_space sp;
	uint8_t id[FL_IMAGE_ID_LEN];
	char idhex[2 * FL_IMAGE_ID_LEN + 1];
	unsigned region;
	uint64_t npages;
	_Atomic uint64_t pages_read, bad_values, missing;
};

/* One MGET: pages [page, page + count) of the region, all in one chunk. */
struct rs_get {
	unsigned iov;
	uint64_t page;			/* first page (region index) */
	unsigned count;
	size_t buf_off;			/* offset of the command in the encode buffer */
};

int fl__redis_value_check(const char *str, size_t len, const uint8_t id[FL_IMAGE_ID_LEN], unsigned region,
			  uint64_t page, uint8_t *dst)
{
	struct rs_value_hdr h;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, str, sizeof(h));
	if (memcmp(h.magic, RS_VALUE_MAGIC, 4) || h.version != RS_VALUE_VERSION || h.reserved ||
	    h.reserved2 || value_hdr_csum(&h) != h.hdr_csum)
		return -EBADMSG;
	/* A well-formed value for another page, region or image: misplaced. */
	if (h.region != region || h.page != page || memcmp(h.id, id, FL_IMAGE_ID_LEN))
		return -EBADMSG;
	if (h.kind == FL_PAGE_ZERO)
		return len == sizeof(h) && !h.csum ? 1 : -EBADMSG;
	if (h.kind != FL_PAGE_DATA || len != sizeof(h) + FL_PAGE_SIZE ||
	    XXH3_64bits(str + sizeof(h), FL_PAGE_SIZE) != h.csum)
		return -EBADMSG;
	memcpy(dst, str + sizeof(h), FL_PAGE_SIZE);
	return 0;
}

static int verify_bytes(const struct redis_store *s, const char *str, size_t len, uint64_t page, uint8_t *dst)
{
	return fl__redis_value_check(str, len, s->id, s->region, page, dst);
}

/* One MGET's destination, for its reply sink. */
struct rs_sink_ctx {
	const struct redis_store *s;
	const struct rs_get *get;
	uint8_t *dst;			/* where get->page goes */
	struct fl__cluster_sink sink;
};

/* Values are verified and copied into place as the reply is parsed. */
static long long sink_value(void *ctx, size_t idx, const char *str, size_t len)
{
	const struct rs_sink_ctx *sc = ctx;
	if (idx >= sc->get->count)
		return -EPROTO;
	return verify_bytes(sc->s, str, len, sc->get->page + idx, sc->dst + idx * FL_PAGE_SIZE);
}

/* The outcome of one element of an MGET reply: 0 data, 1 zero page, or -errno. */
static int element_result(const redisReply *e)
{
	if (!e)
		return -EPROTO;
	/* -ENODATA, not -ENOENT: the engine reads -ENOENT from a resolve as
	 * "the layout changed, let the thread fault again", which for a key
	 * that stays missing would never end. */
	if (e->type == REDIS_REPLY_NIL)
		return -ENODATA;
	if (e->type != FL__CLUSTER_REPLY_SUNK)
		return -EPROTO;
	return e->integer < 0 ? (int)FL_MAX(e->integer, -4095LL) : e->integer ? 1 : 0;
}

/* Encode MGETs for `gets` into b (each get's buf_off set). */
static int encode_gets(struct redis_store *s, struct rs_get *gets, unsigned n, bool fresh, struct fl__resp *b,
		       struct fl__cluster_cmd *cmds, const struct rs_sink_ctx *sinks)
{
	char key[RS_KEY_MAX];
	for (unsigned g = 0; g < n; g++) {
		gets[g].buf_off = b->len;
		fl__resp_array(b, 1 + gets[g].count);
		fl__resp_arg(b, "MGET", 4);
		for (unsigned k = 0; k < gets[g].count; k++) {
			int kl = page_key(key, sizeof(key), s->sp.prefix, s->idhex, s->region, gets[g].page + k);
			if (kl < 0)
				return kl;
			if (k == 0)
				cmds[g] = (struct fl__cluster_cmd){ .slot = (int)fl__cluster_keyslot(key, (size_t)kl),
							       .multi_key = gets[g].count > 1, .fresh = fresh,
							       .sink = &sinks[g].sink };
			fl__resp_arg(b, key, (size_t)kl);
		}
	}
	if (b->err)
		return b->err;
	for (unsigned g = 0; g < n; g++) {
		cmds[g].buf = b->buf + gets[g].buf_off;
		cmds[g].len = (g + 1 < n ? gets[g + 1].buf_off : b->len) - gets[g].buf_off;
	}
	return 0;
}

/* Where the pages of one read batch go, and how each one fared. */
struct rs_batch {
	struct fl_store_iov *iov;
	size_t *base;			/* per iov: index of its first page in zero[] / err[] */
	uint8_t *zero;			/* per page: the value was a zero page */
	int *err;			/* per page: 0 delivered, or -errno */
};

static void page_result(struct rs_batch *bt, const struct rs_get *g, unsigned k, int err, bool zero)
{
	size_t i = bt->base[g->iov] + (g->page + k - bt->iov[g->iov].offset / FL_PAGE_SIZE);
	bt->err[i] = err;
	bt->zero[i] = zero;
}

/*
 * Run MGETs and deliver verified pages. MGETs refused with TRYAGAIN (their
 * slot is half-migrated) are listed in *split for a pass with one key per
 * command, when split is not NULL.
 */
static int run_gets(struct redis_store *s, struct rs_batch *bt, struct rs_get *gets, unsigned n, bool urgent,
		    bool fresh, struct rs_get *split, unsigned *ret_nsplit)
{
	struct fl__resp b = { 0 };
	struct fl__cluster_cmd *cmds = calloc(n, sizeof(*cmds));
	struct rs_sink_ctx *sinks = calloc(n, sizeof(*sinks));
	unsigned nsplit = 0;
	int r;

	if (!cmds || !sinks) {
		free(cmds);
		free(sinks);
		return -ENOMEM;
	}
	for (unsigned g = 0; g < n; g++) {
		struct fl_store_iov *v = &bt->iov[gets[g].iov];
		sinks[g] = (struct rs_sink_ctx){ .s = s, .get = &gets[g],
			.dst = (uint8_t *)v->buf + (gets[g].page - v->offset / FL_PAGE_SIZE) * FL_PAGE_SIZE };
		sinks[g].sink = (struct fl__cluster_sink){ .string = sink_value, .ctx = &sinks[g] };
	}
	r = encode_gets(s, gets, n, fresh, &b, cmds, sinks);
	if (!r)
		fl__cluster_run(s->rc, cmds, n, urgent);
	for (unsigned g = 0; g < n; g++) {
		const redisReply *rep = cmds[g].reply;
		int cmd_err = r ? r : cmds[g].result;

		if (!cmd_err && split && gets[g].count > 1 && fl__cluster_reply_is(rep, "TRYAGAIN")) {
			split[nsplit++] = gets[g];
			continue;
		}
		if (!cmd_err && rep->type == REDIS_REPLY_ERROR) {
			fl__log(&s->log, FL_LOG_WARN, "redis: MGET of region %u pages %llu+%u: %s", s->region,
				(unsigned long long)gets[g].page, gets[g].count, rep->str);
			cmd_err = -EIO;
		} else if (!cmd_err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != gets[g].count)) {
			fl__log(&s->log, FL_LOG_WARN, "redis: malformed MGET reply for region %u pages %llu+%u",
				s->region, (unsigned long long)gets[g].page, gets[g].count);
			cmd_err = -EPROTO;
		}
		for (unsigned k = 0; k < gets[g].count; k++) {
			uint64_t page = gets[g].page + k;
			bool z = false;
			int e = cmd_err;

			if (!e) {
				e = element_result(rep->element[k]);
				z = e == 1;
				e = e < 0 ? e : 0;
			}
			if (e == -ENODATA)
				atomic_fetch_add_explicit(&s->missing, 1, memory_order_relaxed);
			else if (e == -EBADMSG || (e == -EPROTO && !cmd_err))
				atomic_fetch_add_explicit(&s->bad_values, 1, memory_order_relaxed);
			if (e && !cmd_err)
				fl__log(&s->log, e == -ENODATA ? FL_LOG_INFO : FL_LOG_WARN,
					"redis: region %u page %llu: %s%s", s->region, (unsigned long long)page,
					e == -ENODATA ? "no such key" : "value failed verification",
					fresh ? " (again)" : "");
			else if (!e)
				atomic_fetch_add_explicit(&s->pages_read, 1, memory_order_relaxed);
			page_result(bt, &gets[g], k, e, z);
		}
	}
	for (unsigned g = 0; g < n; g++)
		if (cmds[g].reply)
			freeReplyObject(cmds[g].reply);
	free(cmds);
	free(sinks);
	fl__resp_free(&b);
	*ret_nsplit = nsplit;
	return 0;
}

/* One-page gets for every page of `from` whose result says it is worth asking again. */
static unsigned collect_single(struct rs_batch *bt, const struct rs_get *from, unsigned n, bool all,
			       struct rs_get *out)
{
	unsigned m = 0;
	for (unsigned g = 0; g < n; g++) {
		for (unsigned k = 0; k < from[g].count; k++) {
			size_t i = bt->base[from[g].iov] + (from[g].page + k - bt->iov[from[g].iov].offset / FL_PAGE_SIZE);
			int e = bt->err[i];
			/* A bad or missing value may be a broken reply path: ask again on a
			 * new connection. A timeout has used up the budget already. */
			if (all || e == -EBADMSG || e == -EPROTO || e == -ENODATA)
				out[m++] = (struct rs_get){ .iov = from[g].iov, .page = from[g].page + k, .count = 1 };
		}
	}
	return m;
}

static int redis_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct redis_store *s = ctx;
	struct rs_batch bt = { .iov = iov };
	struct rs_get *gets = NULL, *split = NULL, *single = NULL;
	size_t total = 0;
	unsigned ngets = 0, nsplit = 0, nsingle = 0, unused;
	bool urgent = false;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t first = iov[i].offset / FL_PAGE_SIZE, np = iov[i].len / FL_PAGE_SIZE;
		if (iov[i].offset % FL_PAGE_SIZE || iov[i].len % FL_PAGE_SIZE || first + np > s->npages) {
			iov[i].result = first + np > s->npages ? -ERANGE : -EINVAL;
			continue;
		}
		if (np)
			ngets += (unsigned)((first + np - 1) / RS_CHUNK_PAGES - first / RS_CHUNK_PAGES + 1);
		total += np;
		urgent |= (iov[i].flags_in & FL_STORE_IN_URGENT) != 0;
	}
	gets = calloc(ngets + 1, sizeof(*gets));
	split = calloc(ngets + 1, sizeof(*split));
	single = calloc(total + 1, sizeof(*single));
	bt.base = calloc(n, sizeof(*bt.base));
	bt.zero = calloc(total + 1, 1);
	bt.err = calloc(total + 1, sizeof(*bt.err));
	if (!gets || !split || !single || !bt.base || !bt.zero || !bt.err) {
		err = -ENOMEM;
		goto out;
	}
	ngets = 0;
	total = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t first = iov[i].offset / FL_PAGE_SIZE, end = first + iov[i].len / FL_PAGE_SIZE;
		bt.base[i] = total;
		if (iov[i].result)
			continue;
		total += end - first;
		for (uint64_t p = first; p < end;) {
			uint64_t stop = FL_MIN(end, (p / RS_CHUNK_PAGES + 1) * RS_CHUNK_PAGES);
			gets[ngets++] = (struct rs_get){ .iov = i, .page = p, .count = (unsigned)(stop - p) };
			p = stop;
		}
	}
	err = run_gets(s, &bt, gets, ngets, urgent, false, split, &nsplit);
	if (!err && nsplit) {
		/* Half-migrated slots: one key per command, each served where it lives (ASK). */
		nsingle = collect_single(&bt, split, nsplit, true, single);
		err = run_gets(s, &bt, single, nsingle, urgent, false, NULL, &unused);
	}
	/* Values that failed verification (or went missing): read again, each
	 * on a new connection, a bounded number of times. */
	for (int again = 0; !err && again < RS_VERIFY_RETRIES; again++) {
		nsingle = collect_single(&bt, gets, ngets, false, single);
		if (!nsingle)
			break;
		err = run_gets(s, &bt, single, nsingle, urgent, true, NULL, &unused);
	}
	if (err)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		uint64_t np = iov[i].len / FL_PAGE_SIZE;
		bool all_zero = np > 0;
		if (iov[i].result)
			continue;
		for (uint64_t k = 0; k < np && !iov[i].result; k++)
			iov[i].result = bt.err[bt.base[i] + k];
		if (iov[i].result)
			continue;
		for (uint64_t k = 0; k < np && all_zero; k++)
			all_zero = bt.zero[bt.base[i] + k];
		if (all_zero) {
			iov[i].flags_out |= FL_STORE_OUT_ZERO;
			continue;
		}
		for (uint64_t k = 0; k < np; k++)
			if (bt.zero[bt.base[i] + k])
				memset((uint8_t *)iov[i].buf + k * FL_PAGE_SIZE, 0, FL_PAGE_SIZE);
	}
out:
	for (unsigned i = 0; i < n; i++) {
		if (err && !iov[i].result)
			iov[i].result = err;
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	free(gets);
	free(split);
	free(single);
	free(bt.base);
	free(bt.zero);
	free(bt.err);
	return err;
}

static int redis_ctl(void *ctx, int op, void *arg)
{
	struct redis_store *s = ctx;
	struct fl_redis_stats st = { 0 }, *out = arg;
	int r;

	if (op != FL_REDIS_CTL_STATS)
		return -EOPNOTSUPP;
	r = fl__opts_out_check(out);
	if (r)
		return r;
	fl__cluster_stats(s->rc, &st);
	st.sz = sizeof(st);
	st.pages_read = atomic_load(&s->pages_read);
	st.bad_values = atomic_load(&s->bad_values);
	st.missing = atomic_load(&s->missing);
	return FL_OPTS_OUT(out, st);
}

static void redis_destroy(void *ctx)
{
	struct redis_store *s = ctx;
	fl__cluster_free(s->rc);
	free(s);
}

static const struct fl_store_ops redis_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "redis",
	.read = redis_read,
	.ctl = redis_ctl,
	.destroy = redis_destroy,
};

int fl_store_redis_new(const struct fl_redis_opts *opts, struct fl_store **ret_store)
{
	struct redis_store *s;
	struct fl_redis_opts o;
	struct rs_meta meta = { 0 };
	uint64_t length;
	int r;

	if (!ret_store)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = connect_opts(opts, &o, &s->sp, &s->rc);
	if (r)
		goto fail;
	log_setup(&s->log, &o);
	r = meta_load(s->rc, &s->sp, o.image_id, &s->log, &meta);
	if (r)
		goto fail;
	if (o.region >= meta.nregions) {
		r = -ENOENT;
		goto fail;
	}
	memcpy(s->id, meta.id, FL_IMAGE_ID_LEN);
	fl_image_id_format(s->id, s->idhex);
	s->region = o.region;
	length = meta.regions[o.region].length;
	s->npages = length / FL_PAGE_SIZE;
	free(meta.regions);
	meta.regions = NULL;
	r = fl_store_new(&redis_ops, s, length, ret_store);
	if (r)
		goto fail;
	fl__log(&s->log, FL_LOG_INFO, "redis store: image %s region %u (%llu pages) at %s:%d/%s%s", s->idhex,
		s->region, (unsigned long long)s->npages, s->sp.host, s->sp.port, s->sp.prefix,
		fl__cluster_is_cluster(s->rc) ? " (cluster)" : "");
	return 0;
fail:
	free(meta.regions);
	fl__cluster_free(s->rc);
	free(s);
	return r;
}

int fl_redis_regions(const struct fl_redis_opts *opts, struct fl_image_region *regions, unsigned max,
		     uint8_t ret_id[FL_IMAGE_ID_LEN])
{
	struct fl_redis_opts o;
	struct rs_space sp;
	struct fl__cluster *rc = NULL;
	struct fl__logger lg;
	struct rs_meta meta = { 0 };
	size_t stride = 0;
	int r;

	if (max && !regions)
		return -EINVAL;
	if (max) {
		/* The caller's struct may be older or newer than ours: its
		 * regions[0].sz is the array's stride. */
		r = fl__opts_out_check(regions);
		if (r)
			return r;
		stride = regions[0].sz;
	}
	r = connect_opts(opts, &o, &sp, &rc);
	if (r)
		return r;
	log_setup(&lg, &o);
	r = meta_load(rc, &sp, o.image_id, &lg, &meta);
	fl__cluster_free(rc);
	if (r)
		return r;
	for (unsigned i = 0; i < meta.nregions && i < max; i++) {
		const struct rs_meta_region *m = &meta.regions[i];
		struct fl_image_region rg = { .sz = sizeof(rg), .start = m->start, .length = m->length,
					      .prot = m->prot, .mem = m->mem };
		void *dst = (char *)regions + i * stride;

		memcpy(rg.name, m->name, sizeof(rg.name));
		memcpy(dst, &stride, sizeof(stride));	/* every element gets the stride as its sz */
		FL_OPTS_OUT(dst, rg);
	}
	if (ret_id)
		memcpy(ret_id, meta.id, FL_IMAGE_ID_LEN);
	free(meta.regions);
	return (int)meta.nregions;
}

/* ---- push -------------------------------------------------------------- */

struct push {
	struct fl__cluster *rc;
	struct fl__logger log;
	struct rs_space sp;
	uint8_t id[FL_IMAGE_ID_LEN];
	char idhex[2 * FL_IMAGE_ID_LEN + 1];
	struct fl__resp b;
	struct fl__cluster_cmd cmds[RS_PUSH_BATCH];
	size_t cmd_off[RS_PUSH_BATCH + 1];
	/* per command: offsets of each page's key argument (its value follows it) */
	size_t *key_off[RS_PUSH_BATCH];
	unsigned npairs[RS_PUSH_BATCH];
	unsigned ncmds;
	uint8_t *chunk;			/* RS_CHUNK_PAGES pages read from the image */
};

/* A write's reply: "+OK", or an error worth a message. */
static int check_ok(struct push *p, const struct fl__cluster_cmd *c, const char *what)
{
	const redisReply *rep = c->reply;
	if (c->result)
		return c->result;
	if (rep->type == REDIS_REPLY_STATUS)
		return 0;
	fl__log(&p->log, FL_LOG_ERROR, "redis: %s: %s", what,
		rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	if (fl__cluster_reply_is(rep, "OOM"))
		return -ENOSPC;
	if (fl__cluster_reply_is(rep, "NOAUTH") || fl__cluster_reply_is(rep, "NOPERM"))
		return -EACCES;
	return -EPROTO;
}

/* MSET refused with TRYAGAIN (a half-migrated slot): one SET per page. */
static int push_split(struct push *p, unsigned c)
{
	static const char set_hdr[] = "*3\r\n$3\r\nSET\r\n";
	unsigned n = p->npairs[c];
	struct fl__cluster_cmd *cmds = calloc(n, sizeof(*cmds));
	struct fl__resp b = { 0 };
	size_t *off = calloc(n + 1, sizeof(*off));
	int r = 0;

	if (!cmds || !off) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned k = 0; k < n; k++) {
		size_t from = p->key_off[c][k], to = k + 1 < n ? p->key_off[c][k + 1] : p->cmd_off[c + 1];
		off[k] = b.len;
		/* The key and value arguments are already encoded, back to back. */
		if (b.len + sizeof(set_hdr) + (to - from) > b.cap) {
			size_t ncap = (b.cap ? b.cap : 4096);
			char *nb;
			while (ncap < b.len + sizeof(set_hdr) + (to - from))
				ncap *= 2;
			nb = realloc(b.buf, ncap);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			b.buf = nb;
			b.cap = ncap;
		}
		memcpy(b.buf + b.len, set_hdr, sizeof(set_hdr) - 1);
		b.len += sizeof(set_hdr) - 1;
		memcpy(b.buf + b.len, p->b.buf + from, to - from);
		b.len += to - from;
		cmds[k].slot = p->cmds[c].slot;
	}
	off[n] = b.len;
	for (unsigned k = 0; k < n; k++) {
		cmds[k].buf = b.buf + off[k];
		cmds[k].len = off[k + 1] - off[k];
	}
	fl__cluster_run(p->rc, cmds, n, false);
	for (unsigned k = 0; k < n && !r; k++)
		r = check_ok(p, &cmds[k], "SET");
out:
	for (unsigned k = 0; cmds && k < n; k++)
		if (cmds[k].reply)
			freeReplyObject(cmds[k].reply);
	free(cmds);
	free(off);
	fl__resp_free(&b);
	return r;
}

static int push_flush(struct push *p)
{
	int r = p->b.err;

	if (!p->ncmds)
		return 0;
	p->cmd_off[p->ncmds] = p->b.len;
	if (!r) {
		for (unsigned c = 0; c < p->ncmds; c++) {
			p->cmds[c].buf = p->b.buf + p->cmd_off[c];
			p->cmds[c].len = p->cmd_off[c + 1] - p->cmd_off[c];
		}
		fl__cluster_run(p->rc, p->cmds, p->ncmds, false);
	}
	for (unsigned c = 0; c < p->ncmds && !r; c++) {
		if (!p->cmds[c].result && fl__cluster_reply_is(p->cmds[c].reply, "TRYAGAIN"))
			r = push_split(p, c);
		else
			r = check_ok(p, &p->cmds[c], "MSET");
	}
	for (unsigned c = 0; c < p->ncmds; c++) {
		if (p->cmds[c].reply)
			freeReplyObject(p->cmds[c].reply);
		p->cmds[c].reply = NULL;
	}
	p->ncmds = 0;
	p->b.len = 0;
	return r;
}

/* Queue one MSET for pages [first, first + count) of a region (one chunk). */
static int push_chunk(struct push *p, struct fl_image *img, unsigned region, uint64_t first, unsigned count,
		      uint64_t *pages_data, uint64_t *pages_zero, uint64_t *pages_absent)
{
	uint8_t kinds[RS_CHUNK_PAGES];
	char key[RS_KEY_MAX];
	unsigned present = 0, c;
	uint64_t bad = 0;
	int r;

	for (unsigned k = 0; k < count; k++) {
		r = fl_image_page_kind(img, region, first + k);
		if (r < 0)
			return r;
		kinds[k] = (uint8_t)r;
		present += r != FL_PAGE_ABSENT;
	}
	*pages_absent += count - present;
	/* Read runs of present pages (the image verifies their checksums). */
	for (unsigned k = 0; k < count;) {
		unsigned run = 0;
		if (kinds[k] == FL_PAGE_ABSENT) {
			k++;
			continue;
		}
		while (k + run < count && kinds[k + run] != FL_PAGE_ABSENT)
			run++;
		r = fl_image_read(img, region, first + k, run, p->chunk + (size_t)k * FL_PAGE_SIZE, &bad);
		if (r) {
			fl__log(&p->log, FL_LOG_ERROR, "redis push: image region %u page %llu: %s", region,
				(unsigned long long)bad, strerror(-r));
			return r;
		}
		k += run;
	}
	if (!present)
		return 0;
	c = p->ncmds;
	p->cmd_off[c] = p->b.len;
	p->npairs[c] = present;
	fl__resp_array(&p->b, 1 + 2 * present);
	fl__resp_arg(&p->b, "MSET", 4);
	present = 0;
	for (unsigned k = 0; k < count; k++) {
		const uint8_t *data = p->chunk + (size_t)k * FL_PAGE_SIZE;
		struct rs_value_hdr h;
		size_t off;
		int kl;

		if (kinds[k] == FL_PAGE_ABSENT)
			continue;
		kl = page_key(key, sizeof(key), p->sp.prefix, p->idhex, region, first + k);
		if (kl < 0)
			return kl;
		if (present == 0)
			p->cmds[c] = (struct fl__cluster_cmd){ .slot = (int)fl__cluster_keyslot(key, (size_t)kl),
							  .multi_key = p->npairs[c] > 1 };
		p->key_off[c][present++] = fl__resp_arg(&p->b, key, (size_t)kl);
		/* The image's ZERO pages (and data pages that are all zeros are
		 * already ZERO in the image) travel as a header alone. */
		value_hdr_fill(&h, p->id, region, first + k, kinds[k] == FL_PAGE_DATA ? data : NULL);
		off = fl__resp_arg_reserve(&p->b, sizeof(h) + (kinds[k] == FL_PAGE_DATA ? FL_PAGE_SIZE : 0));
		if (p->b.err)
			return p->b.err;
		memcpy(p->b.buf + off, &h, sizeof(h));
		if (kinds[k] == FL_PAGE_DATA) {
			memcpy(p->b.buf + off + sizeof(h), data, FL_PAGE_SIZE);
			(*pages_data)++;
		} else {
			(*pages_zero)++;
		}
	}
	p->ncmds++;
	return p->ncmds == RS_PUSH_BATCH ? push_flush(p) : 0;
}

/* Write the description under the image's id, then as the prefix's latest. */
static int push_meta(struct push *p, struct fl_image *img, uint32_t nregions, uint64_t pages_data,
		     uint64_t pages_zero, uint64_t pages_absent)
{
	struct rs_meta_hdr h = { .version = RS_META_VERSION, .page_size = FL_PAGE_SIZE, .nregions = nregions,
				 .chunk_pages = RS_CHUNK_PAGES, .pages_data = pages_data,
				 .pages_zero = pages_zero, .pages_absent = pages_absent };
	size_t len = sizeof(h) + (size_t)nregions * sizeof(struct rs_meta_region) + sizeof(uint64_t);
	char key[RS_KEY_MAX];
	struct timespec ts;
	uint8_t *blob = calloc(1, len);
	uint64_t csum;
	int r = 0;

	if (!blob)
		return -ENOMEM;
	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(h.magic, RS_META_MAGIC, 8);
	memcpy(h.id, p->id, FL_IMAGE_ID_LEN);
	h.pushed_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	memcpy(blob, &h, sizeof(h));
	for (uint32_t i = 0; i < nregions; i++) {
		struct fl_image_region ir = { .sz = sizeof(ir) };
		struct rs_meta_region m = { 0 };
		r = fl_image_region(img, i, &ir);
		if (r)
			goto out;
		m.start = ir.start;
		m.length = ir.length;
		m.prot = ir.prot;
		m.mem = ir.mem;
		memcpy(m.name, ir.name, sizeof(m.name));
		m.name[sizeof(m.name) - 1] = '\0';
		memcpy(blob + sizeof(h) + i * sizeof(m), &m, sizeof(m));
	}
	csum = XXH3_64bits(blob, len - sizeof(csum));
	memcpy(blob + len - sizeof(csum), &csum, sizeof(csum));
	/* Two rounds: the latest pointer only once the id's copy is stored. */
	for (int i = 0; i < 2 && !r; i++) {
		int kl = meta_key(key, sizeof(key), p->sp.prefix, i == 0 ? p->idhex : NULL);
		if (kl < 0) {
			r = kl;
			break;
		}
		p->cmd_off[0] = 0;
		p->b.len = 0;
		fl__resp_array(&p->b, 3);
		fl__resp_arg(&p->b, "SET", 3);
		fl__resp_arg(&p->b, key, (size_t)kl);
		fl__resp_arg(&p->b, blob, len);
		p->cmds[0] = (struct fl__cluster_cmd){ .slot = (int)fl__cluster_keyslot(key, (size_t)kl) };
		p->npairs[0] = 1;
		p->ncmds = 1;
		r = push_flush(p);
	}
out:
	free(blob);
	return r;
}

int fl_redis_push(struct fl_image *img, const struct fl_redis_opts *opts, fl_progress_fn progress, void *ctx)
{
	struct push *p;
	struct fl_redis_opts o;
	struct fl_image_info info = { .sz = sizeof(info) };
	uint64_t total = 0, done = 0, pages_data = 0, pages_zero = 0, pages_absent = 0;
	int r;

	if (!img)
		return -EINVAL;
	r = fl_image_info(img, &info);
	if (r)
		return r;
	if (info.page_size != FL_PAGE_SIZE || info.nregions > RS_MAX_REGIONS)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->chunk = malloc((size_t)RS_CHUNK_PAGES * FL_PAGE_SIZE);
	for (unsigned c = 0; c < RS_PUSH_BATCH; c++)
		p->key_off[c] = calloc(RS_CHUNK_PAGES, sizeof(size_t));
	for (unsigned c = 0; c < RS_PUSH_BATCH; c++)
		if (!p->key_off[c])
			r = -ENOMEM;
	if (!p->chunk || r) {
		r = -ENOMEM;
		goto out;
	}
	r = connect_opts(opts, &o, &p->sp, &p->rc);
	if (r)
		goto out;
	log_setup(&p->log, &o);
	memcpy(p->id, info.id, FL_IMAGE_ID_LEN);
	fl_image_id_format(p->id, p->idhex);
	for (uint32_t i = 0; i < info.nregions; i++) {
		struct fl_image_region ir = { .sz = sizeof(ir) };
		r = fl_image_region(img, i, &ir);
		if (r)
			goto out;
		total += ir.length / FL_PAGE_SIZE;
	}
	fl__log(&p->log, FL_LOG_INFO, "redis push: image %s, %u region(s), %llu pages to %s:%d/%s%s", p->idhex,
		info.nregions, (unsigned long long)total, p->sp.host, p->sp.port, p->sp.prefix,
		fl__cluster_is_cluster(p->rc) ? " (cluster)" : "");
	if (progress)
		progress(0, total, ctx);
	for (uint32_t i = 0; i < info.nregions && !r; i++) {
		struct fl_image_region ir = { .sz = sizeof(ir) };
		uint64_t np;
		r = fl_image_region(img, i, &ir);
		np = ir.length / FL_PAGE_SIZE;
		for (uint64_t first = 0; first < np && !r; first += RS_CHUNK_PAGES) {
			unsigned count = (unsigned)FL_MIN((uint64_t)RS_CHUNK_PAGES, np - first);
			r = push_chunk(p, img, i, first, count, &pages_data, &pages_zero, &pages_absent);
			done += count;
			if (progress && !r)
				progress(done, total, ctx);
		}
	}
	if (!r)
		r = push_flush(p);
	if (!r)
		r = push_meta(p, img, info.nregions, pages_data, pages_zero, pages_absent);
	if (!r)
		fl__log(&p->log, FL_LOG_INFO, "redis push: image %s done: %llu data, %llu zero, %llu absent pages",
			p->idhex, (unsigned long long)pages_data, (unsigned long long)pages_zero,
			(unsigned long long)pages_absent);
out:
	if (p->rc) {
		for (unsigned c = 0; c < p->ncmds; c++)
			if (p->cmds[c].reply)
				freeReplyObject(p->cmds[c].reply);
		fl__cluster_free(p->rc);
	}
	for (unsigned c = 0; c < RS_PUSH_BATCH; c++)
		free(p->key_off[c]);
	fl__resp_free(&p->b);
	free(p->chunk);
	free(p);
	return r;
}
