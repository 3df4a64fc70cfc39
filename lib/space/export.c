// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fl_space_export(): one version of a persistent space as one image with
 * no parent, one region per segment, for the tools that take images (the
 * page server, Redis, `faultline image`) and know nothing of spaces.
 *
 * The pages come from the version's images on disk, through their chains,
 * never from the page cache: the export is exactly what the version
 * holds, whoever is writing the live segments meanwhile.
 */
#include "space-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Image pages read and written per step: the chain read is batched. */
#define RUN_PAGES 512u

struct export {
	const struct fl_space *sp;
	const struct fl_space_export_opts *o;
	struct fl_image_writer *w;
	struct fl_image **imgs;		/* one per segment of the version */
	unsigned nimgs;
	uint64_t pages_total, pages_done;
	uint8_t *buf;
};

/* Open segment ms's image and check that it is the segment the manifest
 * describes: a chain of the wrong shape is as corrupt as a bad checksum. */
static int open_segment(struct export *ex, const struct fl__mseg *ms, struct fl_image **ret)
{
	struct fl_image_region ir = { .sz = sizeof(ir) };
	struct fl_image_info ii = { .sz = sizeof(ii) };
	char path[PATH_MAX];
	struct fl_image *img;
	int r;

	r = fl__space_image_path(ex->sp, ms->image, path, sizeof(path));
	if (r)
		return r;
	r = fl_image_open(path, 0, &img);
	if (r) {
		fl__log(&ex->sp->log, FL_LOG_ERROR, "segment %s: image %s: %s", ms->name, path,
			r == -ENOENT ? "missing" : r == -EBADMSG ? "corrupt or truncated" : strerror(-r));
		/* A chain that does not match (-ESTALE) or that no longer parses
		 * (-EPROTO) is a corrupt chain to a caller exporting a version. */
		return r == -ESTALE || r == -EPROTO ? -EBADMSG : r;
	}
	r = fl_image_info(img, &ii);
	if (!r)
		r = fl_image_region(img, 0, &ir);
	if (!r && (ii.nregions != 1 || ir.start != ms->base || ir.length != ms->length)) {
		fl__log(&ex->sp->log, FL_LOG_ERROR, "segment %s: image %s holds %u regions, the first 0x%" PRIx64
			"+%" PRIu64 "; the manifest says one, 0x%" PRIx64 "+%" PRIu64, ms->name, path, ii.nregions,
			ir.start, ir.length, ms->base, ms->length);
		r = -EBADMSG;
	}
	if (r) {
		fl_image_close(img);
		return r;
	}
	*ret = img;
	return 0;
}

/* Copy segment `index` (region `index` of the export) from its chain. */
static int copy_segment(struct export *ex, unsigned index, const struct fl__mseg *ms)
{
	const struct fl_image *img = ex->imgs[index];
	uint64_t npages = ms->length / FL_PAGE_SIZE;
	int r = 0;

	for (uint64_t p = 0; p < npages && !r;) {
		int kind = fl_image_page_kind(img, 0, p);
		uint64_t q = p + 1, bad = 0;

		if (kind < 0)
			return kind;
		while (q < npages && q - p < RUN_PAGES && fl_image_page_kind(img, 0, q) == kind)
			q++;
		if (kind == FL_PAGE_ZERO) {
			r = fl_image_writer_put_zero(ex->w, index, p, q - p);
		} else if (kind == FL_PAGE_DATA) {
			r = fl_image_read(img, 0, p, q - p, ex->buf, &bad);
			if (r == -EBADMSG)
				fl__log(&ex->sp->log, FL_LOG_ERROR, "segment %s: page %" PRIu64 " is corrupt in its "
					"image chain", ms->name, bad);
			if (!r)
				r = fl_image_writer_put(ex->w, index, p, q - p, ex->buf);
		} else {
			/* A space's first image holds every page, so a page no image
			 * of the chain holds means a chain cut short. */
			fl__log(&ex->sp->log, FL_LOG_ERROR, "segment %s: page %" PRIu64 " is in no image of its "
				"chain", ms->name, p);
			r = -EBADMSG;
		}
		ex->pages_done += q - p;
		if (!r && ex->o->progress)
			ex->o->progress(ex->pages_done, ex->pages_total, ex->o->progress_ctx);
		p = q;
	}
	return r;
}

static int write_export(struct export *ex, const struct fl__version *v, const char *tmp)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .creator = "faultline space export" };
	int r;

	if (ex->o->flags & FL_SPACE_EXPORT_NO_SYNC)
		wo.flags |= FL_IMAGE_NO_SYNC;
	if (ex->o->flags & FL_SPACE_EXPORT_LZ4)
		wo.flags |= FL_IMAGE_LZ4;
	r = fl_image_writer_new(tmp, &wo, &ex->w);
	if (r) {
		fl__log(&ex->sp->log, FL_LOG_ERROR, "%s: cannot start the image: %s", tmp, strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < v->nsegs && r >= 0; i++) {
		struct fl_image_region ir = { .sz = sizeof(ir) };
		ir.start = v->segs[i].base;
		ir.length = v->segs[i].length;
		ir.prot = PROT_READ | PROT_WRITE;
		ir.mem = (uint32_t)v->segs[i].mem;
		snprintf(ir.name, sizeof(ir.name), "%s", v->segs[i].name);
		r = fl_image_writer_add_region(ex->w, &ir);
	}
	r = r < 0 ? r : 0;
	for (unsigned i = 0; i < v->nsegs && !r; i++)
		r = copy_segment(ex, i, &v->segs[i]);
	if (r) {
		ex->w = fl_image_writer_abort(ex->w);
		return r;
	}
	r = fl_image_writer_finish(ex->w, NULL);
	ex->w = NULL;
	if (r)
		fl__log(&ex->sp->log, FL_LOG_ERROR, "%s: cannot finish the image: %s", tmp, strerror(-r));
	return r;
}

int fl_space_export(const struct fl_space *sp, uint64_t version, const char *path,
		    const struct fl_space_export_opts *opts)
{
	struct fl_space_export_opts o;
	struct export ex = { .sp = sp, .o = &o };
	const struct fl__version *v;
	char tmp[PATH_MAX];
	int r, n;

	if (!sp || !path || !path[0])
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if (o.flags & ~(FL_SPACE_EXPORT_NO_SYNC | FL_SPACE_EXPORT_LZ4))
		return -EINVAL;
	if (!sp->dir[0]) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s is transient: it has no version to export", sp->name);
		return -EINVAL;
	}
	if (!version && sp->man.nversions)
		version = sp->man.versions[sp->man.nversions - 1].number;
	v = fl__manifest_find(&sp->man, version);
	if (!v) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s has no version %" PRIu64, sp->name, version);
		return -ENOENT;
	}
	/* Checked first so that a wrong destination costs nothing; the
	 * final no-replace rename is what really guarantees it. */
	r = fl__path_exists(path);
	if (r) {
		r = r > 0 ? -EEXIST : r;
		fl__log(&sp->log, FL_LOG_ERROR, "%s: %s", path, r == -EEXIST ? "exists already" : strerror(-r));
		return r;
	}
	/* The writer renames its own temporary file over its target: give it
	 * a name of ours beside path, so that path only ever appears whole and
	 * only if nothing took it meanwhile. */
	n = snprintf(tmp, sizeof(tmp), "%s.export-%d-%" PRIx64, path, (int)getpid(), fl__now_ns());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	ex.imgs = calloc(v->nsegs ? v->nsegs : 1, sizeof(*ex.imgs));
	ex.buf = malloc((size_t)RUN_PAGES * FL_PAGE_SIZE);
	if (!ex.imgs || !ex.buf) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < v->nsegs && !r; i++) {
		r = open_segment(&ex, &v->segs[i], &ex.imgs[i]);
		ex.nimgs += !r;
		ex.pages_total += v->segs[i].length / FL_PAGE_SIZE;
	}
	if (!r)
		r = write_export(&ex, v, tmp);
	if (!r) {
		r = fl__rename_noreplace_durable(tmp, path, !(o.flags & FL_SPACE_EXPORT_NO_SYNC));
		if (r) {
			fl__log(&sp->log, FL_LOG_ERROR, "%s: %s", path,
				r == -EEXIST ? "appeared during the export: left alone" : strerror(-r));
			fl__unlink(tmp);
		}
	}
out:
	for (unsigned i = 0; i < ex.nimgs; i++)
		fl_image_close(ex.imgs[i]);
	free(ex.imgs);
	free(ex.buf);
	return r;
}
