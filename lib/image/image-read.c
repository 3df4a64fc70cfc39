// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The image reader: every structure is validated before it is trusted (a
 * flipped byte anywhere gives -EBADMSG, never a crash), and every page's
 * checksum is checked when it is read.
 */
#include "image-format.h"
#include "compress.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

struct fl_image {
	int fd;
	char path[PATH_MAX];
	struct fl__img_header hdr;
	struct fl__img_region *table;
	struct fl__img_page *index;
	uint64_t file_size;
	struct fl_image *parent;	/* a reference of its own */
	unsigned depth;
	_Atomic unsigned refs;
};

static int relpath_dir(const char *path, char *out, size_t len)
{
	char buf[PATH_MAX];
	char *slash;
	if (fl__realpath(path, buf, sizeof(buf)) == 0) {
		slash = strrchr(buf, '/');
		if (slash)
			*slash = '\0';
		snprintf(out, len, "%s", buf);
		return 0;
	}
	/* The child does not exist yet: use its directory. */
	snprintf(buf, sizeof(buf), "%s", path);
	slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(buf, sizeof(buf), ".");
	return fl__realpath(buf, out, len);
}

int fl__img_relpath(const char *parent, const char *child, char *out, size_t len)
{
	char pdir[PATH_MAX], cdir[PATH_MAX], pabs[PATH_MAX];
	int r = fl__realpath(parent, pabs, sizeof(pabs));
	if (r)
		return r;
	r = relpath_dir(pabs, pdir, sizeof(pdir));
	if (!r)
		r = relpath_dir(child, cdir, sizeof(cdir));
	if (r)
		return r;
	if (strcmp(pdir, cdir) == 0)
		snprintf(out, len, "%s", strrchr(pabs, '/') + 1);
	else
		snprintf(out, len, "%s", pabs);
	return 0;
}

int fl__img_parent_path(const char *child, const char *recorded, char *out, size_t len)
{
	const char *slash;
	if (recorded[0] == '/') {
		snprintf(out, len, "%s", recorded);
		return 0;
	}
	slash = strrchr(child, '/');
	if (!slash)
		snprintf(out, len, "%s", recorded);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - child), child, recorded);
	return 0;
}

static int check_structure(struct fl_image *img)
{
	const struct fl__img_header *h = &img->hdr;
	uint64_t table_bytes, index_bytes, expect_page = 0;

	if (h->page_size != FL_PAGE_SIZE || h->nregions > FL_IMG_MAX_REGIONS ||
	    h->data_off != FL_IMG_HEADER_SIZE || h->data_end < h->data_off ||
	    h->total_pages > FL_IMG_MAX_PAGES)
		return -EBADMSG;
	table_bytes = (uint64_t)h->nregions * sizeof(struct fl__img_region);
	index_bytes = h->total_pages * sizeof(struct fl__img_page);
	if (h->table_off < h->data_end || h->index_off != h->table_off + table_bytes ||
	    h->end_off != h->index_off + index_bytes ||
	    h->end_off + sizeof(struct fl__img_end) != img->file_size)
		return -EBADMSG;
	if (memchr(h->parent_path, 0, sizeof(h->parent_path)) == NULL ||
	    memchr(h->creator, 0, sizeof(h->creator)) == NULL)
		return -EBADMSG;
	for (uint32_t i = 0; i < h->nregions; i++) {
		const struct fl__img_region *rg = &img->table[i];
		if (rg->first_page != expect_page || rg->npages > h->total_pages - expect_page ||
		    rg->length != rg->npages * h->page_size || rg->mem > 2 ||
		    memchr(rg->name, 0, sizeof(rg->name)) == NULL)
			return -EBADMSG;
		expect_page += rg->npages;
	}
	if (expect_page != h->total_pages)
		return -EBADMSG;
	for (uint64_t p = 0; p < h->total_pages; p++) {
		const struct fl__img_page *pg = &img->index[p];
		if (pg->kind > FL_PAGE_DATA || pg->comp > FL_IMG_COMP_LZ4 || pg->reserved)
			return -EBADMSG;
		if (pg->kind != FL_PAGE_DATA)
			continue;
		if (pg->offset < h->data_off || pg->stored_len == 0 || pg->offset > h->data_end ||
		    pg->stored_len > h->data_end - pg->offset)
			return -EBADMSG;
		if (pg->comp == FL_IMG_COMP_NONE && (pg->stored_len != h->page_size || pg->offset % h->page_size))
			return -EBADMSG;
		if (pg->comp == FL_IMG_COMP_LZ4 && pg->stored_len > FL_IMG_LZ4_BOUND(h->page_size))
			return -EBADMSG;
	}
	if (!(h->flags & FL_IMG_F_INCREMENTAL)) {
		static const uint8_t zero[16];
		if (memcmp(h->parent_id, zero, 16) || h->parent_path[0])
			return -EBADMSG;
	}
	if (h->flags & ~(FL_IMG_F_INCREMENTAL | FL_IMG_F_LZ4))
		return -EBADMSG;
	return 0;
}

static int open_depth(const char *path, unsigned flags, unsigned depth, struct fl_image **ret)
{
	struct fl_image *img;
	struct fl__img_end end;
	uint8_t id[16];
	XXH3_state_t *st;
	uint64_t csum;
	int r;

	if (depth > FL_IMG_MAX_CHAIN)
		return -ELOOP;
	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->depth = depth;
	atomic_init(&img->refs, 1);
	snprintf(img->path, sizeof(img->path), "%s", path);
	r = fl__open(path, O_RDONLY, &img->fd);
	if (r) {
		free(img);
		return r;
	}
	r = fl__fstat_size(img->fd, &img->file_size);
	if (r)
		goto fail;
	if (img->file_size < FL_IMG_HEADER_SIZE + sizeof(end)) {
		r = img->file_size >= 8 ? -EBADMSG : -EPROTO;
		if (img->file_size >= 8) {
			char m[8];
			if (fl__pread_full(img->fd, m, 8, 0) == 0 && memcmp(m, FL_IMG_MAGIC, 8))
				r = -EPROTO;
		}
		goto fail;
	}
	{
		uint8_t block[FL_IMG_HEADER_SIZE];
		r = fl__pread_full(img->fd, block, sizeof(block), 0);
		if (r)
			goto fail;
		memcpy(&img->hdr, block, sizeof(img->hdr));
		if (memcmp(img->hdr.magic, FL_IMG_MAGIC, 8) || img->hdr.version != FL_IMG_VERSION) {
			r = -EPROTO;
			goto fail;
		}
		csum = fl__img_header_csum(block);
	}
	if (csum != img->hdr.header_csum) {
		r = -EBADMSG;
		goto fail;
	}
	/* Size checks before allocating what the header claims. */
	if (img->hdr.nregions > FL_IMG_MAX_REGIONS ||
	    img->hdr.total_pages > img->file_size / sizeof(struct fl__img_page)) {
		r = -EBADMSG;
		goto fail;
	}
	img->table = calloc(img->hdr.nregions + 1, sizeof(*img->table));
	img->index = calloc(img->hdr.total_pages + 1, sizeof(*img->index));
	if (!img->table || !img->index) {
		r = -ENOMEM;
		goto fail;
	}
	if (img->hdr.end_off > img->file_size || img->file_size - img->hdr.end_off != sizeof(end) ||
	    img->hdr.table_off > img->hdr.end_off || img->hdr.index_off > img->hdr.end_off) {
		r = -EBADMSG;
		goto fail;
	}
	r = fl__pread_full(img->fd, img->table, img->hdr.nregions * sizeof(*img->table), img->hdr.table_off);
	if (!r)
		r = fl__pread_full(img->fd, img->index, img->hdr.total_pages * sizeof(*img->index),
				   img->hdr.index_off);
	if (!r)
		r = fl__pread_full(img->fd, &end, sizeof(end), img->hdr.end_off);
	if (r) {
		r = r == -ERANGE ? -EBADMSG : r;
		goto fail;
	}
	if (memcmp(end.magic, FL_IMG_END_MAGIC, 8) || fl__img_end_csum(&end) != end.end_csum ||
	    end.total_pages != img->hdr.total_pages || end.file_size != img->file_size ||
	    memcmp(end.id, img->hdr.id, 16)) {
		r = -EBADMSG;
		goto fail;
	}
	st = XXH3_createState();
	if (!st) {
		r = -ENOMEM;
		goto fail;
	}
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, img->table, img->hdr.nregions * sizeof(*img->table));
	XXH3_64bits_update(st, img->index, img->hdr.total_pages * sizeof(*img->index));
	csum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (csum != end.index_csum) {
		r = -EBADMSG;
		goto fail;
	}
	r = check_structure(img);
	if (r)
		goto fail;
	fl__img_content_id(img->table, img->hdr.nregions, img->index, img->hdr.total_pages, id);
	if (memcmp(id, img->hdr.id, 16)) {
		r = -EBADMSG;
		goto fail;
	}
	if ((img->hdr.flags & FL_IMG_F_INCREMENTAL) && !(flags & FL_IMAGE_OPEN_NO_PARENT)) {
		char ppath[PATH_MAX];
		struct fl_image *parent;
		fl__img_parent_path(path, img->hdr.parent_path, ppath, sizeof(ppath));
		r = open_depth(ppath, flags & ~FL_IMAGE_OPEN_VERIFY, depth + 1, &parent);
		if (r)
			goto fail;
		img->parent = parent;
		if (memcmp(parent->hdr.id, img->hdr.parent_id, 16) ||
		    parent->hdr.nregions != img->hdr.nregions) {
			r = -ESTALE;
			goto fail;
		}
		for (uint32_t i = 0; i < img->hdr.nregions; i++) {
			if (parent->table[i].npages != img->table[i].npages) {
				r = -ESTALE;
				goto fail;
			}
		}
	}
	if (flags & FL_IMAGE_OPEN_VERIFY) {
		uint64_t bad = 0;
		r = fl_image_verify(img, &bad, NULL, NULL);
		if (r)
			goto fail;
	}
	*ret = img;
	return 0;
fail:
	fl_image_unref(img);
	return r;
}

int fl_image_open(const char *path, unsigned flags, struct fl_image **ret_image)
{
	if (!path || !ret_image || (flags & ~(FL_IMAGE_OPEN_NO_PARENT | FL_IMAGE_OPEN_VERIFY)))
		return -EINVAL;
	return open_depth(path, flags, 0, ret_image);
}

struct fl_image *fl_image_ref(struct fl_image *img)
{
	if (img)
		atomic_fetch_add(&img->refs, 1);
	return img;
}

struct fl_image *fl_image_unref(struct fl_image *img)
{
	if (!img || atomic_fetch_sub(&img->refs, 1) != 1)
		return NULL;
	fl_image_unref(img->parent);
	fl__close(img->fd);
	free(img->table);
	free(img->index);
	free(img);
	return NULL;
}

/* The name from before images were shared: drops the opener's reference. */
struct fl_image *fl_image_close(struct fl_image *img)
{
	return fl_image_unref(img);
}

int fl_image_info(const struct fl_image *img, struct fl_image_info *info)
{
	struct fl_image_info s = { .sz = sizeof(s) };
	int r;

	if (!img)
		return -EINVAL;
	r = fl__opts_out_check(info);
	if (r)
		return r;
	s.version = img->hdr.version;
	s.page_size = img->hdr.page_size;
	s.flags = img->hdr.flags;
	s.nregions = img->hdr.nregions;
	s.created_ns = img->hdr.created_ns;
	memcpy(s.creator, img->hdr.creator, sizeof(s.creator));
	memcpy(s.id, img->hdr.id, 16);
	memcpy(s.parent_id, img->hdr.parent_id, 16);
	memcpy(s.parent_path, img->hdr.parent_path, sizeof(s.parent_path));
	s.pages_total = img->hdr.total_pages;
	for (uint64_t p = 0; p < img->hdr.total_pages; p++) {
		switch (img->index[p].kind) {
		case FL_PAGE_DATA:
			s.pages_data++;
			s.data_bytes += img->index[p].stored_len;
			s.pages_lz4 += img->index[p].comp == FL_IMG_COMP_LZ4;
			break;
		case FL_PAGE_ZERO:
			s.pages_zero++;
			break;
		default:
			s.pages_absent++;
		}
	}
	s.file_bytes = img->file_size;
	for (const struct fl_image *p = img->parent; p; p = p->parent)
		s.chain_depth++;
	return FL_OPTS_OUT(info, s);
}

int fl_image_region(const struct fl_image *img, unsigned index, struct fl_image_region *ret)
{
	struct fl_image_region out = { .sz = sizeof(out) };
	const struct fl__img_region *rg;
	int r;

	if (!img)
		return -EINVAL;
	r = fl__opts_out_check(ret);
	if (r)
		return r;
	if (index >= img->hdr.nregions)
		return -ENOENT;
	rg = &img->table[index];
	out.start = rg->start;
	out.length = rg->length;
	out.prot = rg->prot;
	out.mem = rg->mem;
	memcpy(out.name, rg->name, sizeof(out.name));
	return FL_OPTS_OUT(ret, out);
}

struct fl_image *fl_image_parent(const struct fl_image *img)
{
	return img ? img->parent : NULL;
}

/* The image in the chain that holds page `gp` (global index), or NULL. */
static const struct fl_image *owner(const struct fl_image *img, unsigned region, uint64_t page,
				    const struct fl__img_page **ret)
{
	for (; img; img = img->parent) {
		const struct fl__img_page *pg = &img->index[img->table[region].first_page + page];
		if (pg->kind != FL_PAGE_ABSENT) {
			*ret = pg;
			return img;
		}
	}
	return NULL;
}

int fl_image_page_kind(const struct fl_image *img, unsigned region, uint64_t page)
{
	const struct fl__img_page *pg;
	if (!img || region >= img->hdr.nregions || page >= img->table[region].npages)
		return -EINVAL;
	return owner(img, region, page, &pg) ? pg->kind : FL_PAGE_ABSENT;
}

/* Read and check one page's data (any compression) into out. */
static int read_page(const struct fl_image *img, const struct fl__img_page *pg, uint8_t *out)
{
	uint32_t ps = img->hdr.page_size;
	int r;

	if (pg->comp == FL_IMG_COMP_NONE) {
		r = fl__pread_full(img->fd, out, ps, pg->offset);
	} else {
		char cbuf[FL_IMG_LZ4_BOUND(FL_PAGE_SIZE)];
		r = fl__pread_full(img->fd, cbuf, pg->stored_len, pg->offset);
		if (!r)
			r = fl__lz4_decompress(cbuf, pg->stored_len, out, ps);
	}
	if (r == -ERANGE)
		r = -EBADMSG; /* truncated under us */
	if (!r && XXH3_64bits(out, ps) != pg->csum)
		r = -EBADMSG;
	return r;
}

int fl_image_read(const struct fl_image *img, unsigned region, uint64_t first, uint64_t npages,
		  void *buf, uint64_t *ret_bad_page)
{
	uint32_t ps;
	uint8_t *out = buf;

	if (!img || !buf || region >= img->hdr.nregions || first > img->table[region].npages ||
	    npages > img->table[region].npages - first)
		return -EINVAL;
	ps = img->hdr.page_size;
	for (uint64_t i = 0; i < npages;) {
		const struct fl__img_page *pg;
		const struct fl_image *src = owner(img, region, first + i, &pg);
		uint64_t run = 1;
		int r;

		if (!src) {
			if (ret_bad_page)
				*ret_bad_page = first + i;
			return -ENOENT;
		}
		if (pg->kind == FL_PAGE_ZERO) {
			memset(out + i * ps, 0, ps);
			i++;
			continue;
		}
		if (pg->comp == FL_IMG_COMP_NONE) {
			/* Contiguous uncompressed pages of one image: one pread. */
			const struct fl__img_page *nx = pg;
			while (i + run < npages && owner(img, region, first + i + run, &nx) == src &&
			       nx->kind == FL_PAGE_DATA && nx->comp == FL_IMG_COMP_NONE &&
			       nx->offset == pg->offset + run * ps)
				run++;
			r = fl__pread_full(src->fd, out + i * ps, run * ps, pg->offset);
			if (r == -ERANGE)
				r = -EBADMSG;
			for (uint64_t k = 0; !r && k < run; k++) {
				owner(img, region, first + i + k, &nx);
				if (XXH3_64bits(out + (i + k) * ps, ps) != nx->csum) {
					if (ret_bad_page)
						*ret_bad_page = first + i + k;
					return -EBADMSG;
				}
			}
		} else {
			r = read_page(src, pg, out + i * ps);
		}
		if (r) {
			if (ret_bad_page)
				*ret_bad_page = first + i;
			return r;
		}
		i += run;
	}
	return 0;
}

int fl_image_verify(const struct fl_image *img, uint64_t *ret_bad, fl_progress_fn progress, void *ctx)
{
	uint8_t *buf;
	uint64_t bad = 0, unsupported = 0, done = 0, total = 0;

	if (!img)
		return -EINVAL;
	buf = malloc(FL_PAGE_SIZE);
	if (!buf)
		return -ENOMEM;
	for (const struct fl_image *i = img; i; i = i->parent)
		total += i->hdr.total_pages;
	for (const struct fl_image *i = img; i; i = i->parent) {
		for (uint64_t p = 0; p < i->hdr.total_pages; p++, done++) {
			int r = i->index[p].kind == FL_PAGE_DATA ? read_page(i, &i->index[p], buf) : 0;
			/* An LZ4 page this build cannot decompress is not corrupt. */
			if (r == -EOPNOTSUPP)
				unsupported++;
			else if (r)
				bad++;
			if (progress && (done % 4096 == 0))
				progress(done, total, ctx);
		}
	}
	if (progress)
		progress(total, total, ctx);
	free(buf);
	if (ret_bad)
		*ret_bad = bad;
	return bad ? -EBADMSG : unsupported ? -EOPNOTSUPP : 0;
}

int fl_image_restore(const struct fl_image *img, unsigned region, void *dst)
{
	if (!img || region >= img->hdr.nregions)
		return -EINVAL;
	return fl_image_read(img, region, 0, img->table[region].npages, dst, NULL);
}

void fl_image_id_format(const uint8_t id[FL_IMAGE_ID_LEN], char out[2 * FL_IMAGE_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < FL_IMAGE_ID_LEN; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * FL_IMAGE_ID_LEN] = '\0';
}

/* ---- the image as a store ---------------------------------------------- */

struct img_store {
	struct fl_image *img;
	unsigned region;
};

static int img_store_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct img_store *s = ctx;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t first = iov[i].offset / FL_PAGE_SIZE, np = iov[i].len / FL_PAGE_SIZE;
		bool all_zero = true;

		if (iov[i].offset % FL_PAGE_SIZE || iov[i].len % FL_PAGE_SIZE) {
			iov[i].result = -EINVAL;
		} else {
			for (uint64_t p = first; p < first + np && all_zero; p++)
				all_zero = fl_image_page_kind(s->img, s->region, p) == FL_PAGE_ZERO;
			if (all_zero)
				iov[i].flags_out |= FL_STORE_OUT_ZERO;
			else
				iov[i].result = fl_image_read(s->img, s->region, first, np, iov[i].buf, NULL);
		}
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	return err;
}

static void img_store_destroy(void *ctx)
{
	struct img_store *s = ctx;

	fl_image_unref(s->img);
	free(s);
}

static const struct fl_store_ops img_store_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "image",
	.read = img_store_read,
	.destroy = img_store_destroy,
};

int fl_image_store_new(struct fl_image *img, unsigned region, struct fl_store **ret_store)
{
	struct img_store *s;
	int r;

	if (!img || !ret_store || region >= img->hdr.nregions)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->img = fl_image_ref(img);	/* the store may outlive the caller's reference */
	s->region = region;
	r = fl_store_new(&img_store_ops, s, img->table[region].length, ret_store);
	if (r)
		img_store_destroy(s);
	return r;
}
