// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The streaming image writer: pages in any order, from several threads,
 * into a temporary file that becomes the image only when complete.
 */
#include "image-format.h"
#include "compress.h"
#include "fl-config.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY	/* XXH3_state_t on the stack */
#include <xxhash.h>

struct fl_image_writer {
	pthread_mutex_t mu;
	char path[PATH_MAX];
	char tmp[PATH_MAX];
	int fd;
	unsigned flags;
	uint32_t page_size;
	struct fl__img_header hdr;
	struct fl__img_region *table;
	uint32_t nregions;
	struct fl__img_page *index;	/* allocated at the first put */
	uint64_t total_pages;
	uint64_t cursor;		/* next free data byte */
	uint64_t dead;			/* data bytes no page refers to any more */
	uint64_t reserve;
	struct fl_image *parent;
	char *lz4buf;
	int err;			/* first error: the image is doomed */
};

uint64_t fl__img_header_csum(const uint8_t block[FL_IMG_HEADER_SIZE])
{
	/* The whole 4 KiB block, padding included: any flipped byte shows. */
	uint8_t c[FL_IMG_HEADER_SIZE];
	memcpy(c, block, sizeof(c));
	memset(c + offsetof(struct fl__img_header, header_csum), 0, sizeof(uint64_t));
	return XXH3_64bits(c, sizeof(c));
}

uint64_t fl__img_end_csum(const struct fl__img_end *e)
{
	struct fl__img_end c = *e;
	c.end_csum = 0;
	return XXH3_64bits(&c, sizeof(c));
}

void fl__img_content_id(const struct fl__img_region *table, uint32_t nregions,
			const struct fl__img_page *index, uint64_t total_pages, uint8_t id[16])
{
	/* On the stack: an id that could silently become zeros when an
	 * allocation fails would make every parent check compare zeros. */
	XXH3_state_t state, *st = &state;
	XXH128_hash_t h;
	XXH128_canonical_t c;

	XXH3_INITSTATE(st);
	XXH3_128bits_reset(st);
	for (uint32_t i = 0; i < nregions; i++) {
		/* Layout, not placement: the address a region had is not content. */
		XXH3_128bits_update(st, &table[i].length, sizeof(table[i].length));
		XXH3_128bits_update(st, &table[i].npages, sizeof(table[i].npages));
	}
	for (uint64_t p = 0; p < total_pages; p++) {
		uint8_t kind = index[p].kind;
		XXH3_128bits_update(st, &kind, 1);
		if (kind == FL_PAGE_DATA)
			XXH3_128bits_update(st, &index[p].csum, sizeof(index[p].csum));
	}
	h = XXH3_128bits_digest(st);
	XXH128_canonicalFromHash(&c, h);
	memcpy(id, c.digest, 16);
}

int fl_image_writer_new(const char *path, const struct fl_image_writer_opts *opts,
			struct fl_image_writer **ret_writer)
{
	struct fl_image_writer_opts o;
	struct fl_image_writer *w;
	char dir[PATH_MAX], base[PATH_MAX];
	int r;

	if (!path || !ret_writer || strlen(path) + 32 >= PATH_MAX)
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if (o.flags & ~(FL_IMAGE_LZ4 | FL_IMAGE_NO_SYNC))
		return -EINVAL;
	if ((o.flags & FL_IMAGE_LZ4) && !FL_HAVE_LZ4)
		return -EOPNOTSUPP; /* built without LZ4 (-Dlz4=disabled) */
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	w->fd = -1;
	w->flags = o.flags;
	w->page_size = FL_PAGE_SIZE;
	w->cursor = FL_IMG_HEADER_SIZE;
	w->reserve = o.reserve_bytes;
	snprintf(w->path, sizeof(w->path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(base, sizeof(base), "%s", path);
	snprintf(w->tmp, sizeof(w->tmp), "%s/.%s.tmp.XXXXXX", dirname(dir), basename(base));

	memcpy(w->hdr.magic, FL_IMG_MAGIC, 8);
	w->hdr.version = FL_IMG_VERSION;
	w->hdr.page_size = w->page_size;
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		w->hdr.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	snprintf(w->hdr.creator, sizeof(w->hdr.creator), "%s", o.creator ? o.creator : "libfaultline " FL_VERSION_STRING);
	if (o.flags & FL_IMAGE_LZ4) {
		w->hdr.flags |= FL_IMG_F_LZ4;
		w->lz4buf = malloc(FL_IMG_LZ4_BOUND(w->page_size));
		if (!w->lz4buf) {
			r = -ENOMEM;
			goto fail;
		}
	}
	if (o.parent) {
		struct fl_image_info info = { .sz = sizeof(info) };
		char rel[PATH_MAX];
		r = fl_image_open(o.parent, 0, &w->parent);
		if (r)
			goto fail;
		fl_image_info(w->parent, &info);
		memcpy(w->hdr.parent_id, info.id, 16);
		w->hdr.flags |= FL_IMG_F_INCREMENTAL;
		/* Recorded relative to the child's directory when they share it. */
		r = fl__img_relpath(o.parent, path, rel, sizeof(rel));
		if (r)
			goto fail;
		if (strlen(rel) >= sizeof(w->hdr.parent_path)) {
			r = -ENAMETOOLONG;
			goto fail;
		}
		snprintf(w->hdr.parent_path, sizeof(w->hdr.parent_path), "%s", rel);
	}
	r = fl__mkstemp(w->tmp, &w->fd);
	if (r)
		goto fail;
	*ret_writer = w;
	return 0;
fail:
	fl_image_writer_abort(w);
	return r;
}

int fl_image_writer_add_region(struct fl_image_writer *w, const struct fl_image_region *uregion)
{
	struct fl_image_region rg, *region = &rg;
	struct fl__img_region *t, *nr;
	int r;

	if (!w || !uregion)
		return -EINVAL;
	r = FL_OPTS_COPY(rg, uregion);
	if (r)
		return r;
	if (!rg.length || rg.length % w->page_size)
		return -EINVAL;
	pthread_mutex_lock(&w->mu);
	/* The reader refuses an index past this (image-read.c): refuse to
	 * start an image no reader would open, before anything is allocated. */
	if (rg.length / w->page_size > FL_IMG_MAX_PAGES - w->total_pages) {
		pthread_mutex_unlock(&w->mu);
		return -EFBIG;
	}
	if (w->index || w->nregions >= FL_IMG_MAX_REGIONS) {
		pthread_mutex_unlock(&w->mu);
		return -EBUSY; /* regions first, then pages */
	}
	t = realloc(w->table, (w->nregions + 1) * sizeof(*t));
	if (!t) {
		pthread_mutex_unlock(&w->mu);
		return -ENOMEM;
	}
	w->table = t;
	nr = &t[w->nregions];
	memset(nr, 0, sizeof(*nr));
	nr->start = region->start;
	nr->length = region->length;
	nr->prot = region->prot;
	nr->mem = region->mem;
	nr->first_page = w->total_pages;
	nr->npages = region->length / w->page_size;
	memcpy(nr->name, region->name, sizeof(nr->name));
	nr->name[sizeof(nr->name) - 1] = '\0';
	w->total_pages += nr->npages;
	r = (int)w->nregions++;
	pthread_mutex_unlock(&w->mu);
	return r;
}

/* Called with the lock held. */
static int ensure_index(struct fl_image_writer *w)
{
	if (w->index)
		return 0;
	if (w->parent) {
		/* An incremental image must have its parent's layout. */
		struct fl_image_info info = { .sz = sizeof(info) };
		fl_image_info(w->parent, &info);
		if (info.nregions != w->nregions)
			return -ESTALE;
		for (uint32_t i = 0; i < w->nregions; i++) {
			struct fl_image_region pr = { .sz = sizeof(pr) };
			fl_image_region(w->parent, i, &pr);
			if (pr.length != w->table[i].length)
				return -ESTALE;
		}
	}
	w->index = calloc(w->total_pages ? w->total_pages : 1, sizeof(*w->index));
	if (!w->index)
		return -ENOMEM;
	if (!w->reserve) {
		uint64_t per_page;
		/* Past 2^64 bytes the sum would wrap into a small reservation. */
		if (__builtin_add_overflow((uint64_t)w->page_size, (uint64_t)sizeof(struct fl__img_page), &per_page) ||
		    __builtin_mul_overflow(w->total_pages, per_page, &w->reserve) ||
		    __builtin_add_overflow(w->reserve, FL_IMG_HEADER_SIZE + w->nregions * sizeof(struct fl__img_region) +
					   2 * (uint64_t)w->page_size, &w->reserve))
			return -EFBIG;
	}
	/* Reserve the space now: a full disk fails here, not half-way. */
	return fl__fallocate(w->fd, w->reserve);
}

static bool is_zero(const uint8_t *p, size_t len)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;
	for (size_t i = 0; i < len / 8; i++)
		if (q[i])
			return false;
	return true;
}

/*
 * A page is saved again (a precopy round, copy-before-write after a round
 * saved it): its new bytes go over its old copy when they fit there, so an
 * image keeps one copy of each page. A page that needs a new place leaves
 * dead bytes behind, which finish() compacts away.
 */
static void replaced(struct fl_image_writer *w, const struct fl__img_page *old)
{
	if (old->kind == FL_PAGE_DATA)
		w->dead += old->stored_len;
}

/* Page i of the run at src, whose old copy is uncompressed: write the pages
 * from there that also are, contiguous in the file, in one pwrite. */
static int put_in_place(struct fl_image_writer *w, struct fl__img_page *pg, const uint8_t *src,
			uint64_t npages, uint64_t *ret_run)
{
	uint32_t ps = w->page_size;
	uint64_t run = 1;
	int r;

	while (run < npages && pg[run].kind == FL_PAGE_DATA && pg[run].comp == FL_IMG_COMP_NONE &&
	       pg[run].offset == pg[0].offset + run * ps && !is_zero(src + run * ps, ps))
		run++;
	r = fl__pwrite_full(w->fd, src, run * ps, pg[0].offset);
	if (r)
		return r;
	for (uint64_t k = 0; k < run; k++)
		pg[k].csum = XXH3_64bits(src + k * ps, ps);
	*ret_run = run;
	return 0;
}

static bool reusable(const struct fl__img_page *pg, uint32_t comp, uint32_t len)
{
	return pg->kind == FL_PAGE_DATA && pg->comp == comp && pg->stored_len >= len;
}

static int put_locked(struct fl_image_writer *w, unsigned region, uint64_t first, uint64_t npages,
		      const uint8_t *data)
{
	struct fl__img_region *rg;
	uint32_t ps = w->page_size;
	int r;

	if (w->err)
		return w->err;
	r = ensure_index(w);
	if (r)
		return w->err = r;
	if (region >= w->nregions)
		return -EINVAL;
	rg = &w->table[region];
	if (first > rg->npages || npages > rg->npages - first)
		return -ERANGE;
	for (uint64_t i = 0; i < npages;) {
		struct fl__img_page *pg = &w->index[rg->first_page + first + i];
		const uint8_t *src = data ? data + i * ps : NULL;
		uint64_t run = 1;

		if (!src || is_zero(src, ps)) {
			replaced(w, pg);
			*pg = (struct fl__img_page){ .kind = FL_PAGE_ZERO };
			i++;
			continue;
		}
		if (w->flags & FL_IMAGE_LZ4) {
			int clen = fl__lz4_compress(src, ps, w->lz4buf, FL_IMG_LZ4_BOUND(ps));
			if (clen > 0 && (uint32_t)clen < ps - ps / 8) {
				uint64_t off = w->cursor;
				if (reusable(pg, FL_IMG_COMP_LZ4, (uint32_t)clen)) {
					off = pg->offset;
					w->dead += pg->stored_len - (uint32_t)clen;
				} else {
					replaced(w, pg);
				}
				r = fl__pwrite_full(w->fd, w->lz4buf, (size_t)clen, off);
				if (r)
					return w->err = r;
				*pg = (struct fl__img_page){ .kind = FL_PAGE_DATA, .comp = FL_IMG_COMP_LZ4,
					.stored_len = (uint32_t)clen, .offset = off,
					.csum = XXH3_64bits(src, ps) };
				if (off == w->cursor)
					w->cursor += (uint64_t)clen;
				i++;
				continue;
			}
			if (reusable(pg, FL_IMG_COMP_NONE, ps)) {
				r = put_in_place(w, pg, src, 1, &run);
				if (r)
					return w->err = r;
				i++;
				continue;
			}
			replaced(w, pg);
		} else {
			if (reusable(pg, FL_IMG_COMP_NONE, ps)) {
				r = put_in_place(w, pg, src, npages - i, &run);
				if (r)
					return w->err = r;
				i += run;
				continue;
			}
			/* One pwrite for a run of non-zero pages with no copy yet. */
			replaced(w, pg);
			while (i + run < npages && !is_zero(src + run * ps, ps) &&
			       !reusable(pg + run, FL_IMG_COMP_NONE, ps)) {
				replaced(w, pg + run);
				run++;
			}
		}
		/* Uncompressed data is page-aligned: it can be mapped from the file. */
		w->cursor = (w->cursor + ps - 1) / ps * ps;
		r = fl__pwrite_full(w->fd, src, run * ps, w->cursor);
		if (r)
			return w->err = r;
		for (uint64_t k = 0; k < run; k++) {
			w->index[rg->first_page + first + i + k] = (struct fl__img_page){
				.kind = FL_PAGE_DATA, .comp = FL_IMG_COMP_NONE, .stored_len = ps,
				.offset = w->cursor + k * ps, .csum = XXH3_64bits(src + k * ps, ps) };
		}
		w->cursor += run * ps;
		i += run;
	}
	return 0;
}

int fl_image_writer_put(struct fl_image_writer *w, unsigned region, uint64_t first, uint64_t npages,
			const void *data)
{
	int r;
	if (!w || !data)
		return -EINVAL;
	pthread_mutex_lock(&w->mu);
	r = put_locked(w, region, first, npages, data);
	pthread_mutex_unlock(&w->mu);
	return r;
}

int fl_image_writer_put_zero(struct fl_image_writer *w, unsigned region, uint64_t first, uint64_t npages)
{
	int r;
	if (!w)
		return -EINVAL;
	pthread_mutex_lock(&w->mu);
	r = put_locked(w, region, first, npages, NULL);
	pthread_mutex_unlock(&w->mu);
	return r;
}

struct placed {
	uint64_t offset, page;
};

static int by_offset(const void *a, const void *b)
{
	uint64_t x = ((const struct placed *)a)->offset, y = ((const struct placed *)b)->offset;
	return x < y ? -1 : x > y;
}

/* Copy [from, from + len) down to `to` (to < from), in chunks read before
 * they are written: what a chunk overwrites has been read already. */
static int move_down(int fd, uint8_t *buf, size_t cap, uint64_t from, uint64_t to, uint64_t len)
{
	while (len) {
		size_t n = (size_t)FL_MIN(len, (uint64_t)cap);
		int r = fl__pread_full(fd, buf, n, from);
		if (!r)
			r = fl__pwrite_full(fd, buf, n, to);
		if (r)
			return r;
		from += n;
		to += n;
		len -= n;
	}
	return 0;
}

/*
 * Pages that moved (LZ4 copies that grew, data that became zeros) left dead
 * bytes: slide the live data down over them, in file order, so the image
 * holds one copy of each page and nothing else. Moving in increasing
 * offset order only ever overwrites bytes already moved or dead.
 */
static int compact(struct fl_image_writer *w)
{
	uint32_t ps = w->page_size;
	size_t cap = 1u << 20;
	struct placed *order;
	uint64_t n = 0, to = FL_IMG_HEADER_SIZE;
	uint64_t run_from = 0, run_to = 0, run_len = 0;
	uint8_t *buf;
	int r = 0;

	order = malloc((w->total_pages ? w->total_pages : 1) * sizeof(*order));
	buf = malloc(cap);
	if (!order || !buf) {
		free(order);
		free(buf);
		return -ENOMEM;
	}
	for (uint64_t p = 0; p < w->total_pages; p++)
		if (w->index[p].kind == FL_PAGE_DATA)
			order[n++] = (struct placed){ w->index[p].offset, p };
	qsort(order, n, sizeof(*order), by_offset);
	for (uint64_t k = 0; k < n && !r; k++) {
		struct fl__img_page *pg = &w->index[order[k].page];
		/* Uncompressed data stays page-aligned (it can be mapped). */
		if (pg->comp == FL_IMG_COMP_NONE)
			to = (to + ps - 1) / ps * ps;
		if (run_len && (pg->offset != run_from + run_len || to != run_to + run_len)) {
			if (run_to != run_from)
				r = move_down(w->fd, buf, cap, run_from, run_to, run_len);
			run_len = 0;
		}
		if (!run_len) {
			run_from = pg->offset;
			run_to = to;
		}
		run_len += pg->stored_len;
		pg->offset = to;
		to += pg->stored_len;
	}
	if (!r && run_len && run_to != run_from)
		r = move_down(w->fd, buf, cap, run_from, run_to, run_len);
	if (!r) {
		w->cursor = to;
		w->dead = 0;
	}
	free(order);
	free(buf);
	return r;
}

int fl_image_writer_finish(struct fl_image_writer *w, uint8_t ret_id[FL_IMAGE_ID_LEN])
{
	struct fl__img_end end = { 0 };
	uint64_t table_bytes, index_bytes;
	XXH3_state_t *st;
	int r;

	if (!w)
		return -EINVAL;
	pthread_mutex_lock(&w->mu);
	r = w->err ? w->err : ensure_index(w);
	pthread_mutex_unlock(&w->mu);
	if (r)
		goto fail;
	if (w->dead) {
		/* Without the memory to compact, the image is still whole:
		 * sealed with its dead bytes rather than thrown away. */
		r = compact(w);
		if (r && r != -ENOMEM)
			goto fail;
		r = 0;
	}
	table_bytes = (uint64_t)w->nregions * sizeof(*w->table);
	index_bytes = w->total_pages * sizeof(*w->index);
	w->hdr.nregions = w->nregions;
	w->hdr.total_pages = w->total_pages;
	w->hdr.data_off = FL_IMG_HEADER_SIZE;
	w->hdr.data_end = w->cursor;
	w->hdr.table_off = (w->cursor + 7) / 8 * 8;
	w->hdr.index_off = w->hdr.table_off + table_bytes;
	w->hdr.end_off = w->hdr.index_off + index_bytes;
	fl__img_content_id(w->table, w->nregions, w->index, w->total_pages, w->hdr.id);

	memcpy(end.magic, FL_IMG_END_MAGIC, 8);
	st = XXH3_createState();
	if (!st) {
		r = -ENOMEM;
		goto fail;
	}
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, w->table, table_bytes);
	XXH3_64bits_update(st, w->index, index_bytes);
	end.index_csum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	end.total_pages = w->total_pages;
	end.file_size = w->hdr.end_off + sizeof(end);
	memcpy(end.id, w->hdr.id, 16);
	end.end_csum = fl__img_end_csum(&end);

	if (table_bytes)
		r = fl__pwrite_full(w->fd, w->table, table_bytes, w->hdr.table_off);
	if (!r && index_bytes)
		r = fl__pwrite_full(w->fd, w->index, index_bytes, w->hdr.index_off);
	if (!r)
		r = fl__pwrite_full(w->fd, &end, sizeof(end), w->hdr.end_off);
	if (!r) {
		uint8_t hdr[FL_IMG_HEADER_SIZE] = { 0 };
		memcpy(hdr, &w->hdr, sizeof(w->hdr));
		w->hdr.header_csum = fl__img_header_csum(hdr);
		memcpy(hdr, &w->hdr, sizeof(w->hdr));
		r = fl__pwrite_full(w->fd, hdr, sizeof(hdr), 0);
	}
	if (!r)
		r = fl__ftruncate(w->fd, end.file_size);	/* give back the unused reserve */
	if (!r && !(w->flags & FL_IMAGE_NO_SYNC))
		r = fl__fsync(w->fd);
	if (!r)
		r = fl__rename_durable(w->tmp, w->path, !(w->flags & FL_IMAGE_NO_SYNC));
	if (r)
		goto fail;
	w->tmp[0] = '\0';	/* renamed: nothing to clean up */
	if (ret_id)
		memcpy(ret_id, w->hdr.id, FL_IMAGE_ID_LEN);
	fl_image_writer_abort(w);
	return 0;
fail:
	fl_image_writer_abort(w);
	return r;
}

struct fl_image_writer *fl_image_writer_abort(struct fl_image_writer *w)
{
	if (!w)
		return NULL;
	fl__close(w->fd);
	if (w->tmp[0] && w->fd >= 0)
		fl__unlink(w->tmp);
	fl_image_close(w->parent);
	free(w->table);
	free(w->index);
	free(w->lz4buf);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return NULL;
}

const char *fl_image_writer_temp_path(const struct fl_image_writer *w)
{
	return w ? w->tmp : NULL;
}

int fl_image_write_ranges(const char *path, const struct fl_range *ranges, unsigned n,
			  const struct fl_image_writer_opts *opts)
{
	struct fl_image_writer *w;
	int r;

	if (!ranges && n)
		return -EINVAL;
	r = fl_image_writer_new(path, opts, &w);
	if (r)
		return r;
	for (unsigned i = 0; i < n && r >= 0; i++) {
		struct fl_image_region reg = { .sz = sizeof(reg), .start = ranges[i].start, .length = ranges[i].len,
					       .prot = 3, .mem = FL_MEM_ANON };
		snprintf(reg.name, sizeof(reg.name), "range%u", i);
		r = fl_image_writer_add_region(w, &reg);
	}
	for (unsigned i = 0; i < n && r >= 0; i++)
		r = fl_image_writer_put(w, i, 0, ranges[i].len / FL_PAGE_SIZE,
					(const void *)(uintptr_t)ranges[i].start);
	if (r < 0) {
		fl_image_writer_abort(w);
		return r;
	}
	return fl_image_writer_finish(w, NULL);
}
