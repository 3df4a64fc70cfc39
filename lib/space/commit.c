// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Versions of a persistent space: fl_space_commit() writes one image per
 * segment (incremental against the previous version), then the manifest.
 * The manifest's rename is the commit point: images of a version that
 * never reached the manifest are orphans a later commit overwrites.
 */
#include "space-internal.h"
#include "clone-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Bytes read from a segment's page cache per write to the image. */
#define CHUNK (2u << 20)

/*
 * Which pages of the segment hold bytes that are not (or may not be) the
 * parent image's: those in its page cache. This process knows the pages
 * its attachments brought in (the bitmaps); another process sharing the
 * page cache (a fork) may have brought in more. shmem says exactly which
 * pages are resident (SEEK_DATA / SEEK_HOLE), and the page cache's record
 * (struct fl__pcache, shared with forks) which of them a fill put there.
 * hugetlbfs says every page is data, so there the record alone says
 * which pages to save. (A template always has a record; the fallback
 * without one reads each page nobody here touched and saves it if it is
 * not all zeros, which misses zeros written over the parent's bytes.)
 */
static int resident_pages(const struct fl__link *l, uint8_t *buf, uint64_t *map)
{
	const struct fl__seg *s = l->seg;
	const struct fl_region *live = l->vtpl ? NULL : l->region;
	int fd = fl_template_fd(s->tpl), ret = 0;
	/* A present page no fill put there was planted by a process mapping
	 * the page cache without being served (a zero page): not the
	 * segment's bytes, and nobody served has seen or written it. */
	struct fl__pcache *pc = fl__template_pcache(s->tpl);

	for (uint64_t p = 0; p < s->npages; p++)
		if (fl__seg_page_filled(s, live, p))
			map[p / 64] |= 1ull << (p % 64);
	if (s->mem == FL_MEM_SHMEM) {
		uint64_t off = 0, end;
		while (off < s->length) {
			ret = fl__lseek(fd, off, SEEK_DATA, &off);
			if (ret == -ENXIO)
				return 0;	/* no data past off */
			if (!ret)
				ret = fl__lseek(fd, off, SEEK_HOLE, &end);
			if (ret)
				return ret;
			for (uint64_t p = off / s->psz; p < (end + s->psz - 1) / s->psz && p < s->npages; p++)
				if (!pc || fl__bit_test(pc->filled, p))
					map[p / 64] |= 1ull << (p % 64);
			off = end;
		}
		return 0;
	}
	if (!l->parent[0] && !s->store)
		return 0;	/* unfilled pages are zeros anyway */
	if (pc) {
		/* Every page written through a served mapping was filled
		 * first: the record is exact, zeros written over the parent's
		 * bytes included. */
		for (uint64_t p = 0; p < s->npages; p++)
			if (fl__bit_test(pc->filled, p))
				map[p / 64] |= 1ull << (p % 64);
		return 0;
	}
	for (uint64_t p = 0; p < s->npages && !ret; p++) {
		if ((map[p / 64] >> (p % 64)) & 1)
			continue;
		ret = fl__pread_full(fd, buf, s->psz, p * s->psz);
		for (size_t k = 0; k < s->psz / 8 && !ret; k++) {
			if (((const uint64_t *)buf)[k]) {
				map[p / 64] |= 1ull << (p % 64);
				break;
			}
		}
	}
	return ret;
}

static bool map_test(const uint64_t *map, uint64_t p)
{
	return (map[p / 64] >> (p % 64)) & 1;
}

/* A live commit's copier claims at most this many bytes at once: a
 * writer of a claimed page waits for the read of them all. */
#define LIVE_CLAIM (64u << 10)

/*
 * Live: save the pages [p, q) of `map`, each once: those the copier
 * claims are read here, the others were copied by a fault handler before
 * a write (or are being copied: fl__live_take() waits).
 */
static int put_live(struct fl__live_seg *ls, struct fl_image_writer *w, int fd, size_t psz, uint64_t p, uint64_t q,
		    uint8_t *buf)
{
	uint64_t claim = LIVE_CLAIM / psz ? LIVE_CLAIM / psz : 1;
	int ret = 0;

	while (p < q && !ret) {
		int n = fl__live_claim(ls, p, FL_MIN(q - p, claim));
		if (n > 0) {
			ret = fl__pread_full(fd, buf, (size_t)n * psz, p * psz);
			/* Even on error: a writer may wait for these pages. */
			fl__live_claimed_saved(ls, p, (uint64_t)n);
			if (!ret)
				ret = fl_image_writer_put(w, 0, p * psz / FL_PAGE_SIZE, n * psz / FL_PAGE_SIZE, buf);
			p += (uint64_t)n;
		} else {
			uint8_t *copy;
			ret = fl__live_take(ls, p, &copy);
			if (!ret)
				ret = fl_image_writer_put(w, 0, p * psz / FL_PAGE_SIZE, psz / FL_PAGE_SIZE, copy);
			free(copy);
			p++;
		}
	}
	return ret;
}

/*
 * Save the pages of l's segment in `map` (in the page cache: filled or
 * written since the space was opened); the others are still the parent
 * image's (ABSENT), or, when there is none, the segment's store's (read
 * from it now: the version must not depend on the store) or zeros. `ls`:
 * a live commit's state of the segment, or NULL.
 */
static int save_segment(struct fl_space *sp, struct fl__link *l, const char *path, uint8_t *buf, const uint64_t *map,
			struct fl__live_seg *ls, uint64_t *bytes_saved)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo) };
	struct fl_image_region ir = { .sz = sizeof(ir) };
	const struct fl__seg *s = l->seg;
	struct fl_image_writer *w;
	int fd = fl_template_fd(s->tpl), ret;
	uint64_t per = CHUNK / s->psz;

	wo.flags = (sp->flags & FL_SPACE_NO_SYNC) ? FL_IMAGE_NO_SYNC : 0;
	wo.parent = l->parent[0] ? l->parent : NULL;
	wo.creator = "faultline space";
	ret = fl_image_writer_new(path, &wo, &w);
	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: cannot start %s: %s", s->name, path, strerror(-ret));
		return ret;
	}
	ir.start = s->base;
	ir.length = s->length;
	ir.prot = PROT_READ | PROT_WRITE;
	ir.mem = (uint32_t)s->mem;
	snprintf(ir.name, sizeof(ir.name), "%s", s->name);
	ret = fl_image_writer_add_region(w, &ir);
	ret = ret < 0 ? ret : 0;
	for (uint64_t p = 0; p < s->npages && !ret;) {
		bool filled = map_test(map, p);
		uint64_t q = p + 1;

		while (q < s->npages && q - p < per && map_test(map, q) == filled)
			q++;
		if (filled && ls) {
			ret = put_live(ls, w, fd, s->psz, p, q, buf);
		} else if (filled) {
			ret = fl__pread_full(fd, buf, (q - p) * s->psz, p * s->psz);
			if (!ret)
				ret = fl_image_writer_put(w, 0, p * s->psz / FL_PAGE_SIZE,
							  (q - p) * s->psz / FL_PAGE_SIZE, buf);
		} else if (!wo.parent) {
			ret = fl__seg_put_unfilled(s, w, p, q - p, buf);
		}
		if (filled)
			*bytes_saved += (q - p) * s->psz;
		p = q;
	}
	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: cannot save it: %s", s->name, strerror(-ret));
		fl_image_writer_abort(w);
		return ret;
	}
	ret = fl_image_writer_finish(w, NULL);
	if (ret)
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: cannot finish %s: %s", s->name, path, strerror(-ret));
	return ret;
}

/* maps[i]: the pages of link i in the page cache now. */
static int find_resident(struct fl_space *sp, uint64_t **maps, uint8_t *buf)
{
	for (unsigned i = 0; i < sp->nlinks; i++) {
		const struct fl__seg *s = sp->links[i].seg;
		int ret;

		memset(maps[i], 0, ((s->npages + 63) / 64 + 1) * sizeof(uint64_t));
		ret = resident_pages(&sp->links[i], buf, maps[i]);
		if (ret) {
			fl__log(&sp->log, FL_LOG_ERROR, "segment %s: cannot find its pages in memory: %s", s->name,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int pause_writers(struct fl_space *sp, const struct fl_commit_opts *o)
{
	int ret = o->quiesce ? o->quiesce(true, o->quiesce_ctx) : 0;

	if (ret)
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: the writers did not pause: %s", sp->name, strerror(-ret));
	return ret;
}

/*
 * The pages to save, and for a live commit the instant: with quiesce,
 * the writers are paused for this only. *ret_paused: the writers are
 * still paused (a plain commit: for the copy).
 */
static int prepare(struct fl_space *sp, const struct fl_commit_opts *o, uint64_t **maps, uint8_t *buf,
		   struct fl__live **ret_live, bool *ret_paused)
{
	bool live = (o->flags & FL_COMMIT_LIVE) && fl__live_needed(sp);
	struct fl__live *lv = NULL;
	int ret, r;

	if (live) {
		ret = fl__live_new(sp, maps, &lv);
		if (ret)
			return ret;
	}
	ret = pause_writers(sp, o);
	if (ret) {
		fl__live_free(lv, NULL);
		return ret;
	}
	ret = find_resident(sp, maps, buf);
	if (!ret && lv)
		ret = fl__live_arm(lv, maps);
	if (o->quiesce && (lv || ret)) {
		r = o->quiesce(false, o->quiesce_ctx);
		if (r && !ret)
			ret = r;
	}
	if (ret) {
		fl__live_free(lv, NULL);
		return ret;
	}
	*ret_live = lv;
	*ret_paused = o->quiesce && !lv;
	return 0;
}

int fl_space_commit(struct fl_space *sp, const struct fl_commit_opts *opts, uint64_t *ret_version)
{
	struct fl_commit_stats st = { .sz = sizeof(st) };
	struct fl__version v = { 0 };
	struct fl_commit_opts o;
	struct fl__live *lv = NULL;
	uint8_t *buf = NULL;
	uint64_t **maps = NULL;
	char (*paths)[PATH_MAX] = NULL;
	unsigned saved = 0;
	bool paused = false;
	int ret;

	if (!sp)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (o.flags & ~FL_COMMIT_LIVE)
		return -EINVAL;
	if (o.stats) {
		ret = fl__opts_out_check(o.stats);
		if (ret)
			return ret;
	}
	if (!sp->dir[0]) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s is transient: nothing to commit to", sp->name);
		return -EINVAL;
	}
	if (sp->attached && sp->attached_version) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s is attached at version %" PRIu64 ": read-only", sp->name,
			sp->attached_version);
		return -EROFS;
	}
	v.number = sp->man.nversions ? sp->man.versions[sp->man.nversions - 1].number + 1 : 1;
	v.nsegs = sp->nlinks;
	v.segs = calloc(sp->nlinks ? sp->nlinks : 1, sizeof(*v.segs));
	paths = calloc(sp->nlinks ? sp->nlinks : 1, sizeof(*paths));
	maps = calloc(sp->nlinks ? sp->nlinks : 1, sizeof(*maps));
	buf = malloc(CHUNK);
	if (!v.segs || !paths || !maps || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < sp->nlinks && !ret; i++) {
		maps[i] = calloc((sp->links[i].seg->npages + 63) / 64 + 1, sizeof(uint64_t));
		ret = maps[i] ? 0 : -ENOMEM;
	}
	if (ret)
		goto out;
	memcpy(v.roots, sp->roots, sizeof(sp->roots));
	v.nroots = sp->nroots;
	ret = prepare(sp, &o, maps, buf, &lv, &paused);
	if (ret)
		goto out;
	for (; saved < sp->nlinks && !ret; saved++) {
		const struct fl__seg *s = sp->links[saved].seg;
		struct fl__mseg *ms = &v.segs[saved];

		snprintf(ms->name, sizeof(ms->name), "%s", s->name);
		ms->base = s->base;
		ms->length = s->length;
		ms->mem = s->mem;
		snprintf(ms->image, sizeof(ms->image), "%s.v%" PRIu64 ".img", s->name, v.number);
		ret = fl__space_image_path(sp, ms->image, paths[saved], sizeof(paths[saved]));
		if (ret)
			break;
		ret = save_segment(sp, &sp->links[saved], paths[saved], buf, maps[saved], fl__live_seg(lv, saved),
				   &st.bytes_saved);
		if (ret)
			break;
	}
	/* Every page of the instant is saved: the writers go at full speed
	 * again before the images reach the disk. */
	fl__live_free(lv, &st);
	if (paused) {
		int r = o.quiesce(false, o.quiesce_ctx);
		if (r && !ret)
			ret = r;
	}
	if (!ret)
		ret = fl__manifest_add_version(&sp->man, &v);
	if (!ret) {
		ret = fl__manifest_write(sp->dir, &sp->man, !(sp->flags & FL_SPACE_NO_SYNC), &sp->log);
		if (ret) {
			sp->man.nversions--;
			free(sp->man.versions[sp->man.nversions].segs);
		}
	}
	if (ret) {
		/* Not in the manifest: gone, so nothing on disk changed. */
		for (unsigned i = 0; i < saved && i < sp->nlinks; i++)
			fl__unlink(paths[i]);
		goto out;
	}
	for (unsigned i = 0; i < sp->nlinks; i++)
		snprintf(sp->links[i].parent, sizeof(sp->links[i].parent), "%s", paths[i]);
	if (o.stats)
		FL_OPTS_OUT(o.stats, st);
	if (ret_version)
		*ret_version = v.number;
out:
	for (unsigned i = 0; maps && i < sp->nlinks; i++)
		free(maps[i]);
	free(maps);
	free(v.segs);
	free(paths);
	free(buf);
	return ret;
}
