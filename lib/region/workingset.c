// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Working sets (see workingset.h): the recorder, a hook that observes a
 * region's faults; the file format; and the replay, a hook whose thread
 * installs the recorded pages.
 *
 * File (little-endian): a 64-byte header, then `count` uint32 page numbers
 * in first-touch order.
 *   0  magic "FLWSET\0\0"     8  version (1)      12 page_size
 *  16  region_pages (u64)     24 image_region     28 flags (bit 0: bound
 *  32  image id (16 bytes)                              to an image id)
 *  48  count (u64)            56 xxh3 of the header's first 56 bytes and
 *                                the payload, seeded with the version
 */
#include "region-internal.h"

#include <faultline/workingset.h>

#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define WS_MAGIC "FLWSET\0\0"
#define WS_VERSION 1u
#define WS_HEADER 64u
#define WS_BOUND 1u
#define WS_NONE UINT32_MAX
#define REPLAY_BATCH 512u

struct fl_working_set {
	uint32_t page_size;
	uint64_t region_pages;
	uint64_t count;
	uint32_t *pages;
};

struct fl__ws_rec {
	struct fl__region_hook hook;
	_Atomic bool recording;
	_Atomic uint64_t n;		/* slots taken */
	uint64_t cap;			/* the region's pages: a page is noted once */
	_Atomic uint32_t *pages;	/* WS_NONE until written */
	_Atomic uint64_t *seen;		/* bitmap */
};

struct fl__replay {
	struct fl__region_hook hook;
	struct fl_region *region;
	pthread_t thread;
	pthread_mutex_t mu;
	bool joined;
	_Atomic bool stop;
	uint32_t *pages;
	uint64_t count;
	int64_t installed;
};

/* ---- recording ------------------------------------------------------------ */

/* A first touch, before the faulting access returns. */
static void rec_fault(struct fl__region_hook *h, struct fl_region *r, uint64_t page)
{
	struct fl__ws_rec *rec = (struct fl__ws_rec *)h;
	uint64_t slot;

	(void)r;
	if (!atomic_load_explicit(&rec->recording, memory_order_relaxed) || page >= rec->cap ||
	    fl__bit_set(rec->seen, page))
		return;
	slot = atomic_fetch_add_explicit(&rec->n, 1, memory_order_relaxed);
	if (slot < rec->cap)
		atomic_store_explicit(&rec->pages[slot], (uint32_t)page, memory_order_release);
}

static void rec_free(struct fl__region_hook *h)
{
	struct fl__ws_rec *rec = (struct fl__ws_rec *)h;

	free((void *)rec->pages);
	free((void *)rec->seen);
	free(rec);
}

static const struct fl__region_hook_ops rec_ops = { .fault = rec_fault, .free = rec_free };

int fl_region_record(struct fl_region *r)
{
	struct fl__ws_rec *rec;

	if (!r || !r->engine)
		return -EINVAL;
	if (fl__region_hook_find(r, &rec_ops))
		return -EALREADY;
	if (r->npages >= WS_NONE)
		return -EFBIG;
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->hook.ops = &rec_ops;
	rec->cap = r->npages;
	rec->pages = malloc(r->npages * sizeof(*rec->pages));
	rec->seen = calloc((r->npages + 63) / 64, sizeof(*rec->seen));
	if (!rec->pages || !rec->seen) {
		rec_free(&rec->hook);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < r->npages; i++)
		atomic_init(&rec->pages[i], WS_NONE);
	atomic_init(&rec->recording, true);
	/* No prefetch from before the first recorded fault on. */
	fl__region_exact_faults(r, true);
	if (fl__region_hook_add(r, &rec->hook, NULL)) {
		fl__region_exact_faults(r, false);
		rec_free(&rec->hook);
		return -EALREADY;
	}
	return 0;
}

static struct fl_working_set *ws_alloc(uint64_t count)
{
	struct fl_working_set *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return NULL;
	ws->pages = malloc(FL_MAX(count, 1) * sizeof(*ws->pages));
	if (!ws->pages) {
		free(ws);
		return NULL;
	}
	return ws;
}

int fl_region_record_stop(struct fl_region *r, struct fl_working_set **ret_ws)
{
	struct fl__ws_rec *rec;
	struct fl_working_set *ws;
	uint64_t n;

	if (!r || !ret_ws)
		return -EINVAL;
	rec = (struct fl__ws_rec *)fl__region_hook_find(r, &rec_ops);
	if (!rec || !atomic_exchange(&rec->recording, false))
		return -EINVAL;
	fl__region_exact_faults(r, false);
	n = FL_MIN(atomic_load(&rec->n), rec->cap);
	ws = ws_alloc(n);
	if (!ws)
		return -ENOMEM;
	ws->page_size = (uint32_t)r->page_size;
	ws->region_pages = r->npages;
	/* A handler that took a slot just before the stop may not have
	 * written it yet: skip what is still empty. */
	for (uint64_t i = 0; i < n; i++) {
		uint32_t p = atomic_load_explicit(&rec->pages[i], memory_order_acquire);
		if (p != WS_NONE)
			ws->pages[ws->count++] = p;
	}
	*ret_ws = ws;
	return 0;
}

size_t fl_working_set_pages(const struct fl_working_set *ws)
{
	return ws ? ws->count : 0;
}

size_t fl_working_set_page_size(const struct fl_working_set *ws)
{
	return ws ? ws->page_size : 0;
}

struct fl_working_set *fl_working_set_free(struct fl_working_set *ws)
{
	if (ws) {
		free(ws->pages);
		free(ws);
	}
	return NULL;
}

/* ---- the file ------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t ws_csum(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	if (!st)
		return 0;
	XXH3_64bits_reset_withSeed(st, WS_VERSION);
	XXH3_64bits_update(st, hdr, 56);
	XXH3_64bits_update(st, payload, len);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

/* What a file is bound to: the image's id and the region's geometry. */
static int ws_binding(const struct fl_image *img, unsigned img_region, uint8_t id[FL_IMAGE_ID_LEN],
		      uint64_t *ret_pages, uint32_t *ret_psz)
{
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_region reg = { .sz = sizeof(reg) };
	int r;

	r = fl_image_info(img, &info);
	if (r)
		return r;
	r = fl_image_region(img, img_region, &reg);
	if (r)
		return r;
	memcpy(id, info.id, FL_IMAGE_ID_LEN);
	*ret_psz = info.page_size;
	*ret_pages = info.page_size ? reg.length / info.page_size : 0;
	return 0;
}

int fl_working_set_save(const struct fl_working_set *ws, const char *path, const struct fl_image *img,
			unsigned img_region)
{
	uint8_t hdr[WS_HEADER] = { 0 }, id[FL_IMAGE_ID_LEN] = { 0 };
	char tmp[PATH_MAX], d[PATH_MAX], b[PATH_MAX];
	uint8_t *payload;
	size_t len;
	int fd = -1, r;

	if (!ws || !path || strlen(path) >= PATH_MAX - 32)
		return -EINVAL;
	if (img) {
		uint64_t pages;
		uint32_t psz;
		r = ws_binding(img, img_region, id, &pages, &psz);
		if (r)
			return r;
		/* A set recorded in huge pages is bound to the same region in
		 * its own page size: the region's page count must match. */
		if ((uint64_t)pages * psz != ws->region_pages * ws->page_size)
			return -ESTALE;
	}
	len = ws->count * 4;
	payload = malloc(FL_MAX(len, 1));
	if (!payload)
		return -ENOMEM;
	for (uint64_t i = 0; i < ws->count; i++)
		put32(payload + 4 * i, ws->pages[i]);
	memcpy(hdr, WS_MAGIC, 8);
	put32(hdr + 8, WS_VERSION);
	put32(hdr + 12, ws->page_size);
	put64(hdr + 16, ws->region_pages);
	put32(hdr + 24, img ? img_region : 0);
	put32(hdr + 28, img ? WS_BOUND : 0);
	memcpy(hdr + 32, id, FL_IMAGE_ID_LEN);
	put64(hdr + 48, ws->count);
	put64(hdr + 56, ws_csum(hdr, payload, len));

	snprintf(d, sizeof(d), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.XXXXXX", dirname(d), basename(b));
	r = fl__mkstemp(tmp, &fd);
	if (r)
		goto out;
	r = fl__pwrite_full(fd, hdr, sizeof(hdr), 0);
	if (!r)
		r = fl__pwrite_full(fd, payload, len, sizeof(hdr));
	if (!r)
		r = fl__fsync(fd);
	if (!r)
		r = fl__rename_durable(tmp, path, true);
	if (r)
		fl__unlink(tmp);
out:
	fl__close(fd);
	free(payload);
	return r;
}

int fl_working_set_load(const char *path, const struct fl_image *img, unsigned img_region,
			struct fl_working_set **ret_ws)
{
	uint8_t hdr[WS_HEADER], *payload = NULL;
	struct fl_working_set *ws = NULL;
	uint64_t size, count, pages;
	uint32_t psz;
	int fd = -1, r;

	if (!path || !ret_ws)
		return -EINVAL;
	r = fl__open(path, O_RDONLY | O_CLOEXEC, &fd);
	if (r)
		return r;
	r = fl__fstat_size(fd, &size);
	if (r)
		goto out;
	r = -EPROTO;
	if (size < WS_HEADER)
		goto out;
	r = fl__pread_full(fd, hdr, sizeof(hdr), 0);
	if (r)
		goto out;
	r = -EPROTO;
	if (memcmp(hdr, WS_MAGIC, 8) || get32(hdr + 8) != WS_VERSION)
		goto out;
	r = -EBADMSG;
	count = get64(hdr + 48);
	pages = get64(hdr + 16);
	psz = get32(hdr + 12);
	if (size != WS_HEADER + count * 4 || count > pages || pages >= WS_NONE || !psz ||
	    (psz & (psz - 1)))
		goto out;
	payload = malloc(FL_MAX(count * 4, 1));
	ws = ws_alloc(count);
	r = -ENOMEM;
	if (!payload || !ws)
		goto out;
	r = fl__pread_full(fd, payload, count * 4, WS_HEADER);
	if (r)
		goto out;
	r = -EBADMSG;
	if (ws_csum(hdr, payload, count * 4) != get64(hdr + 56))
		goto out;
	for (uint64_t i = 0; i < count; i++) {
		ws->pages[i] = get32(payload + 4 * i);
		if (ws->pages[i] >= pages)
			goto out;
	}
	ws->count = count;
	ws->page_size = psz;
	ws->region_pages = pages;
	if (img) {
		uint8_t id[FL_IMAGE_ID_LEN];
		uint64_t ipages;
		uint32_t ipsz;
		r = ws_binding(img, img_region, id, &ipages, &ipsz);
		if (r)
			goto out;
		r = -ESTALE;
		if (!(get32(hdr + 28) & WS_BOUND) || get32(hdr + 24) != img_region ||
		    memcmp(hdr + 32, id, FL_IMAGE_ID_LEN) || ipages * ipsz != pages * psz)
			goto out;
	}
	*ret_ws = ws;
	ws = NULL;
	r = 0;
out:
	fl_working_set_free(ws);
	free(payload);
	fl__close(fd);
	return r;
}

/* ---- replay --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void *replay_main(void *arg)
{
	struct fl__replay *rp = arg;
	struct fl_region *r = rp->region;
	struct fl_engine *e = r->engine;
	uint32_t batch[REPLAY_BATCH];
	struct fl__worker w;
	uint64_t before = atomic_load(&r->pages_replayed);

	if (fl__worker_init(&w, (size_t)REPLAY_BATCH * r->page_size, 1))
		return NULL;
	/* Runs the store fails: fl__resolve_or_poison() installs what it can
	 * page by page and leaves the rest to demand faults (which fail closed). */
	for (uint64_t i = 0; i < rp->count && !atomic_load(&rp->stop); i += REPLAY_BATCH) {
		uint64_t n = FL_MIN(REPLAY_BATCH, rp->count - i);

		/* Recorded order between batches, runs within one. */
		memcpy(batch, rp->pages + i, n * sizeof(*batch));
		qsort(batch, n, sizeof(*batch), cmp_u32);
		pthread_rwlock_rdlock(&e->lock);
		if (atomic_load(&r->t.dead) || atomic_load(&fl__region_space(r)->dead)) {
			pthread_rwlock_unlock(&e->lock);
			break;
		}
		for (uint64_t k = 0; k < n;) {
			uint64_t first = batch[k], end = first + 1;
			struct fl__resolve_req req;
			k++;
			while (k < n && batch[k] <= end) {
				end = (uint64_t)batch[k] + 1;
				k++;
			}
			/* Skip what faults or an earlier run already installed. */
			while (first < end && (fl__bit_test(r->resolved, first) || fl__bit_test(r->poisoned, first)))
				first++;
			while (end > first && (fl__bit_test(r->resolved, end - 1) || fl__bit_test(r->poisoned, end - 1)))
				end--;
			if (first >= end)
				continue;
			req = (struct fl__resolve_req){
				.space = fl__region_space(r), .base = (uintptr_t)r->addr, .first = first,
				.count = end - first, .fault_page = UINT64_MAX, .source = FL_SRC_REPLAY,
			};
			if (fl__resolve_classify(fl__resolve_or_poison(r, &req, &w)) == FL__CLIENT_GONE)
				break;
		}
		pthread_rwlock_unlock(&e->lock);
	}
	fl__worker_fini(&w);
	rp->installed = (int64_t)(atomic_load(&r->pages_replayed) - before);
	return NULL;
}

static int replay_start(struct fl__region_hook *h)
{
	struct fl__replay *rp = (struct fl__replay *)h;

	return -pthread_create(&rp->thread, NULL, replay_main, rp);
}

/* The region leaves the index: the thread must not touch it any more. */
static void replay_stop(struct fl__region_hook *h, struct fl_region *r)
{
	struct fl__replay *rp = (struct fl__replay *)h;

	(void)r;
	atomic_store(&rp->stop, true);
	pthread_mutex_lock(&rp->mu);
	if (!rp->joined) {
		pthread_join(rp->thread, NULL);
		rp->joined = true;
	}
	pthread_mutex_unlock(&rp->mu);
}

static void replay_free(struct fl__region_hook *h)
{
	struct fl__replay *rp = (struct fl__replay *)h;

	replay_stop(h, rp->region);
	pthread_mutex_destroy(&rp->mu);
	free(rp->pages);
	free(rp);
}

static const struct fl__region_hook_ops replay_ops = { .stop = replay_stop, .free = replay_free };

int fl_region_replay(struct fl_region *r, const struct fl_working_set *ws)
{
	struct fl__replay *rp;
	int ret;

	if (!r || !ws || !r->engine || (r->flags & FL_REGION_FOREIGN))
		return -EINVAL;
	if (ws->page_size != r->page_size || ws->region_pages != r->npages)
		return -ESTALE;
	rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	rp->hook.ops = &replay_ops;
	rp->region = r;
	rp->count = ws->count;
	rp->pages = malloc(FL_MAX(ws->count, 1) * sizeof(*rp->pages));
	if (!rp->pages) {
		free(rp);
		return -ENOMEM;
	}
	memcpy(rp->pages, ws->pages, ws->count * sizeof(*rp->pages));
	pthread_mutex_init(&rp->mu, NULL);
	/* One replay per region, ever: the thread starts only once the hook
	 * is known to be the first. */
	ret = fl__region_hook_add(r, &rp->hook, replay_start);
	if (ret) {
		pthread_mutex_destroy(&rp->mu);
		free(rp->pages);
		free(rp);
		return ret == -EEXIST ? -EBUSY : ret;
	}
	return 0;
}

int64_t fl_region_replay_wait(struct fl_region *r)
{
	struct fl__replay *rp;

	if (!r)
		return -EINVAL;
	rp = (struct fl__replay *)fl__region_hook_find(r, &replay_ops);
	if (!rp)
		return 0;
	pthread_mutex_lock(&rp->mu);
	if (!rp->joined) {
		pthread_join(rp->thread, NULL);
		rp->joined = true;
	}
	pthread_mutex_unlock(&rp->mu);
	return rp->installed;
}
