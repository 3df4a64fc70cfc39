// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Address spaces (see space.h): segments are templates (lib/clone) at
 * fixed addresses, an attachment is one MINOR region (lib/region) per
 * segment, a switch moves new regions over old ones with mremap.
 */
#include "space-internal.h"
#include "clone-internal.h"
#include "space-share.h"

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The user range a segment may use: above mmap_min_addr's usual 64 KiB,
 * below the 47-bit user limit of x86-64 (and arm64's 48-bit default). */
#define USER_MIN (64ull << 10)
#define USER_MAX (1ull << 47)

bool fl__space_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (!n || n > FL_SPACE_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

int fl__space_image_path(const struct fl_space *sp, const char *image, char *out, size_t len)
{
	int n;

	if (image[0] == '/')
		n = snprintf(out, len, "%s", image);
	else
		n = snprintf(out, len, "%s/%s", sp->dir, image);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- segments ---------------------------------------------------------- */

static struct fl__seg *seg_unref(struct fl__seg *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		fl_template_free(s->tpl);
		fl_store_unref(s->store);
		free(s->filled);
		free(s);
	}
	return NULL;
}

static bool test_bit(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

bool fl__seg_page_filled(const struct fl__seg *s, const struct fl_region *r, uint64_t page)
{
	if (test_bit(s->filled, page))
		return true;
	return r && fl__bit_test(r->cached, page);
}

int fl__seg_put_unfilled(const struct fl__seg *s, struct fl_image_writer *w, uint64_t first, uint64_t n,
			 uint8_t *buf)
{
	uint64_t img_first = first * s->psz / FL_PAGE_SIZE, img_n = n * s->psz / FL_PAGE_SIZE;
	struct fl_store_iov iov = { .offset = first * s->psz, .buf = buf, .len = n * s->psz };
	int ret;

	if (!s->store)
		return fl_image_writer_put_zero(w, 0, img_first, img_n);
	/* Not urgent: a commit must not hold up the faults of other users of
	 * a remote store. */
	ret = fl_store_read(s->store, &iov, 1);
	if (!ret)
		ret = iov.result;
	if (ret)
		return ret;
	if (iov.flags_out & FL_STORE_OUT_ZERO)
		return fl_image_writer_put_zero(w, 0, img_first, img_n);
	return fl_image_writer_put(w, 0, img_first, img_n, buf);
}

/* An attachment's region goes: what it brought into the page cache stays there. */
static void seg_absorb(struct fl__seg *s, const struct fl_region *r)
{
	for (uint64_t i = 0; i < (s->npages + 63) / 64; i++)
		s->filled[i] |= atomic_load(&r->cached[i]);
}

/* A segment whose pages come from `store` (a reference is taken), or zeros. */
static int seg_new(const struct fl__logger *log, const char *name, uint64_t base, uint64_t length,
		   enum fl_mem_type mem, struct fl_store *store, struct fl__seg **ret_seg)
{
	struct fl_template_opts to = { .sz = sizeof(to), .mem = mem, .length = length, .name = name };
	struct fl__seg *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	atomic_init(&s->refs, 1);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->base = base;
	s->length = length;
	s->mem = mem;
	s->psz = mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;
	s->npages = length / s->psz;
	s->filled = calloc((s->npages + 63) / 64 + 1, sizeof(uint64_t));
	ret = s->filled ? 0 : -ENOMEM;
	if (!ret && !store)
		ret = fl_store_zero_new(length, &to.store);
	else
		to.store = fl_store_ref(store);
	if (!ret)
		ret = fl_template_new(&to, &s->tpl);
	fl_store_unref(to.store);
	if (ret) {
		fl__log(log, FL_LOG_ERROR, "segment %s: cannot make its page cache: %s", name, strerror(-ret));
		seg_unref(s);
		return ret;
	}
	*ret_seg = s;
	return 0;
}

/* A segment over an image of the space (absolute path in `path`). */
static int seg_from_image(const struct fl__logger *log, const struct fl__mseg *ms, const char *path,
			  struct fl__seg **ret)
{
	struct fl_image_region ir = { .sz = sizeof(ir) };
	struct fl_image *img;
	struct fl_store *st;
	int r;

	r = fl_image_open(path, 0, &img);
	if (r) {
		fl__log(log, FL_LOG_ERROR, "segment %s: image %s: %s", ms->name, path,
			r == -ENOENT ? "missing" : r == -EBADMSG ? "corrupt or truncated" : strerror(-r));
		return r;
	}
	r = fl_image_region(img, 0, &ir);
	if (!r && (ir.length != ms->length || ir.start != ms->base)) {
		fl__log(log, FL_LOG_ERROR, "segment %s: image %s holds 0x%" PRIx64 "+%" PRIu64 ", the manifest says "
			"0x%" PRIx64 "+%" PRIu64, ms->name, path, ir.start, ir.length, ms->base, ms->length);
		r = -EBADMSG;
	}
	if (!r)
		r = fl_image_store_new(img, 0, &st);
	fl_image_close(img);
	if (r)
		return r;
	r = seg_new(log, ms->name, ms->base, ms->length, ms->mem, st, ret);
	fl_store_unref(st);
	return r;
}

/* Checks of a segment against the space; the message names the cause. */
static int check_range(const struct fl_space *sp, const char *name, uint64_t base, uint64_t length,
		       enum fl_mem_type mem)
{
	uint64_t psz = mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;

	if (!fl__space_name_ok(name)) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: bad segment name", sp->name);
		return -EINVAL;
	}
	if (mem > FL_MEM_HUGETLB) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: unknown memory type %d", name, (int)mem);
		return -EINVAL;
	}
	if (!length || base % psz || length % psz) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: base 0x%" PRIx64 " or length %" PRIu64
			" is not a multiple of the page size (%" PRIu64 ")", name, base, length, psz);
		return -EINVAL;
	}
	if (base < USER_MIN || base > USER_MAX || length > USER_MAX - base) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: 0x%" PRIx64 "+%" PRIu64
			" is outside the user address range", name, base, length);
		return -EINVAL;
	}
	for (unsigned i = 0; i < sp->nlinks; i++) {
		const struct fl__seg *o = sp->links[i].seg;
		if (!strcmp(o->name, name)) {
			fl__log(&sp->log, FL_LOG_ERROR, "space %s: a segment is named %s already", sp->name, name);
			return -EEXIST;
		}
		if (base < o->base + o->length && o->base < base + length) {
			fl__log(&sp->log, FL_LOG_ERROR, "segment %s (0x%" PRIx64 "+%" PRIu64 ") overlaps segment %s "
				"(0x%" PRIx64 "+%" PRIu64 ")", name, base, length, o->name, o->base, o->length);
			return -EINVAL;
		}
	}
	return 0;
}

static int add_link(struct fl_space *sp, struct fl__seg *s, const char *parent)
{
	struct fl__link *l = realloc(sp->links, (sp->nlinks + 1) * sizeof(*l));

	if (!l)
		return -ENOMEM;
	sp->links = l;
	l = &sp->links[sp->nlinks];
	memset(l, 0, sizeof(*l));
	l->seg = s;
	atomic_fetch_add(&s->refs, 1);
	snprintf(l->parent, sizeof(l->parent), "%s", parent ? parent : "");
	return (int)sp->nlinks++;
}

int fl_space_segment_add(struct fl_space *sp, const struct fl_segment_opts *opts)
{
	struct fl_segment_opts o;
	struct fl__seg *s;
	int ret;

	if (!sp || !opts)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (sp->attached)
		return -EBUSY;
	if (o.flags)
		return -EINVAL;
	if (o.mem == FL_MEM_ANON)
		o.mem = FL_MEM_SHMEM;
	ret = check_range(sp, o.name, o.base, o.length, o.mem);
	if (ret)
		return ret;
	/* A short store would fail the faults past its end with SIGBUS long
	 * after this call: refuse it here, where the caller can be told. */
	if (o.store && fl_store_size(o.store) < o.length) {
		fl__log(&sp->log, FL_LOG_ERROR, "segment %s: its store (%s) holds %" PRIu64 " bytes, fewer than the "
			"segment's %" PRIu64, o.name, fl_store_name(o.store), fl_store_size(o.store), o.length);
		return -EINVAL;
	}
	ret = seg_new(&sp->log, o.name, o.base, o.length, o.mem, o.store, &s);
	if (ret)
		return ret;
	s->store = o.store ? fl_store_ref(o.store) : NULL;
	ret = add_link(sp, s, NULL);
	seg_unref(s);
	return ret;
}

int fl_space_segment_share(struct fl_space *dst, const struct fl_space *src, const char *name)
{
	const struct fl__link *l = NULL;
	int ret;

	if (!dst || !src || !name || dst == src)
		return -EINVAL;
	if (dst->attached)
		return -EBUSY;
	for (unsigned i = 0; i < src->nlinks && !l; i++)
		if (!strcmp(src->links[i].seg->name, name))
			l = &src->links[i];
	if (!l) {
		fl__log(&dst->log, FL_LOG_ERROR, "space %s has no segment %s", src->name, name);
		return -ENOENT;
	}
	ret = check_range(dst, name, l->seg->base, l->seg->length, l->seg->mem);
	if (ret)
		return ret;
	/* Its unfilled pages are those of src's image: dst's first commit
	 * is incremental against it. */
	return add_link(dst, l->seg, l->parent);
}

int fl_space_segment_info(const struct fl_space *sp, unsigned index, struct fl_segment_info *info)
{
	struct fl_segment_info si = { .sz = sizeof(si) };
	const struct fl__seg *s;
	int ret;

	if (!sp || !info)
		return -EINVAL;
	ret = fl__opts_out_check(info);
	if (ret)
		return ret;
	if (index >= sp->nlinks)
		return -ENOENT;
	s = sp->links[index].seg;
	snprintf(si.name, sizeof(si.name), "%s", s->name);
	si.base = s->base;
	si.length = s->length;
	si.mem = s->mem;
	for (uint64_t p = 0; p < s->npages; p++)
		si.pages_cached += fl__seg_page_filled(s, sp->links[index].vtpl ? NULL : sp->links[index].region, p);
	return FL_OPTS_OUT(info, si);
}

/* ---- spaces ---------------------------------------------------------- */

static int space_alloc(const struct fl_space_opts *o, const char *name, struct fl_space **ret)
{
	struct fl_space *sp;

	if (!fl__space_name_ok(name) || (o->flags & ~FL_SPACE_NO_SYNC))
		return -EINVAL;
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	sp->log = (struct fl__logger){ o->log, o->log_ctx, FL_LOG_DEBUG };
	snprintf(sp->name, sizeof(sp->name), "%s", name);
	sp->flags = o->flags;
	*ret = sp;
	return 0;
}

/* Make the directory of a new persistent space, with a manifest of no version. */
static int make_dir(struct fl_space *sp, const char *dir)
{
	int ret = fl__mkdir(dir, 0700);

	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "%s: cannot create the space directory: %s", dir, strerror(-ret));
		return ret;
	}
	ret = fl__realpath(dir, sp->dir, sizeof(sp->dir));
	snprintf(sp->man.name, sizeof(sp->man.name), "%s", sp->name);
	if (!ret)
		ret = fl__manifest_write(sp->dir, &sp->man, !(sp->flags & FL_SPACE_NO_SYNC), &sp->log);
	return ret;
}

int fl_space_new(const struct fl_space_opts *opts, struct fl_space **ret_space)
{
	struct fl_space_opts o;
	struct fl_space *sp;
	int ret;

	if (!opts || !ret_space)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	ret = space_alloc(&o, o.name, &sp);
	if (ret)
		return ret;
	if (o.dir && (ret = make_dir(sp, o.dir))) {
		fl_space_free(sp);
		return ret;
	}
	*ret_space = sp;
	return 0;
}

static void copy_roots(struct fl_space *sp, const struct fl__version *v)
{
	memcpy(sp->roots, v->roots, sizeof(v->roots));
	sp->nroots = v->nroots;
}

/* The segments of version v, empty: pages come from its images. */
static int load_version(struct fl_space *sp, const struct fl_space *images_of, const struct fl__version *v)
{
	int ret = 0;

	for (unsigned i = 0; i < v->nsegs && !ret; i++) {
		const struct fl__mseg *ms = &v->segs[i];
		char path[PATH_MAX];
		struct fl__seg *s;

		ret = check_range(sp, ms->name, ms->base, ms->length, ms->mem);
		if (ret)
			break;
		ret = fl__space_image_path(images_of, ms->image, path, sizeof(path));
		if (ret)
			break;
		ret = seg_from_image(&sp->log, ms, path, &s);
		if (ret)
			break;
		ret = add_link(sp, s, path);
		seg_unref(s);
		ret = ret < 0 ? ret : 0;
	}
	if (!ret)
		copy_roots(sp, v);
	return ret;
}

int fl_space_open(const char *dir, const struct fl_space_opts *opts, struct fl_space **ret_space)
{
	struct fl_space_opts o;
	struct fl__manifest man = { 0 };
	struct fl__logger log;
	struct fl_space *sp;
	char abs[PATH_MAX];
	int ret;

	if (!dir || !ret_space)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	log = (struct fl__logger){ o.log, o.log_ctx, FL_LOG_DEBUG };
	ret = fl__realpath(dir, abs, sizeof(abs));
	if (ret) {
		fl__log(&log, FL_LOG_ERROR, "%s: %s", dir, strerror(-ret));
		return ret;
	}
	ret = fl__manifest_read(abs, &log, &man);
	if (ret)
		return ret;
	ret = space_alloc(&o, man.name, &sp);
	if (ret) {
		fl__manifest_clear(&man);
		return ret;
	}
	sp->man = man;
	snprintf(sp->dir, sizeof(sp->dir), "%s", abs);
	if (man.nversions)
		ret = load_version(sp, sp, &man.versions[man.nversions - 1]);
	if (ret) {
		fl_space_free(sp);
		return ret;
	}
	*ret_space = sp;
	return 0;
}

struct fl_space *fl_space_free(struct fl_space *sp)
{
	if (!sp)
		return NULL;
	if (sp->attached)
		fl_space_detach(sp);
	for (unsigned i = 0; i < sp->nlinks; i++)
		seg_unref(sp->links[i].seg);
	free(sp->links);
	fl__manifest_clear(&sp->man);
	fl_engine_free(sp->engine);
	free(sp);
	return NULL;
}

int fl_space_info(const struct fl_space *sp, struct fl_space_info *info)
{
	struct fl_space_info si = { .sz = sizeof(si) };

	if (!sp || !info)
		return -EINVAL;
	snprintf(si.name, sizeof(si.name), "%s", sp->name);
	si.persistent = sp->dir[0] != 0;
	si.attached = sp->attached;
	si.nsegments = sp->nlinks;
	si.nroots = sp->nroots;
	si.version = sp->man.nversions ? sp->man.versions[sp->man.nversions - 1].number : 0;
	si.attached_version = sp->attached ? sp->attached_version : 0;
	return FL_OPTS_OUT(info, si);
}

int fl_space_versions(const struct fl_space *sp, uint64_t *ret_versions, unsigned n)
{
	if (!sp || (n && !ret_versions))
		return -EINVAL;
	for (unsigned i = 0; i < n && i < sp->man.nversions; i++)
		ret_versions[i] = sp->man.versions[i].number;
	return (int)sp->man.nversions;
}

/* ---- roots ----------------------------------------------------------- */

int fl_space_root_set(struct fl_space *sp, const char *name, const void *ptr)
{
	if (!sp || !fl__space_name_ok(name))
		return -EINVAL;
	for (unsigned i = 0; i < sp->nroots; i++) {
		if (strcmp(sp->roots[i].name, name))
			continue;
		if (ptr) {
			sp->roots[i].value = (uintptr_t)ptr;
		} else {
			sp->roots[i] = sp->roots[sp->nroots - 1];
			sp->nroots--;
		}
		return 0;
	}
	if (!ptr)
		return 0;
	if (sp->nroots == FL_SPACE_ROOTS_MAX)
		return -ENOSPC;
	snprintf(sp->roots[sp->nroots].name, sizeof(sp->roots[0].name), "%s", name);
	sp->roots[sp->nroots++].value = (uintptr_t)ptr;
	return 0;
}

int fl_space_root_get(const struct fl_space *sp, const char *name, void **ret_ptr)
{
	if (!sp || !name || !ret_ptr)
		return -EINVAL;
	for (unsigned i = 0; i < sp->nroots; i++) {
		if (!strcmp(sp->roots[i].name, name)) {
			*ret_ptr = (void *)(uintptr_t)sp->roots[i].value;
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- attach, detach, switch ------------------------------------------- */

static void log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	fl__log(ctx, level, "%s", msg);
}

/*
 * One handler thread: a switch relies on the engine handling the REMAP
 * and UNMAP events of a mremap before any fault read after them (see
 * fl_space_switch(3)); with one thread, events of a read are handled
 * before the next read.
 */
static int space_engine(struct fl_space *sp)
{
	/* Errors only: during a switch the engine warns of faults that raced
	 * the move and were answered by waking the thread, which is the
	 * design working, not something to tell the application. */
	struct fl_engine_opts eo = { .sz = sizeof(eo), .threads = 1, .log = log_cb, .log_ctx = &sp->log,
				     .log_level = FL_LOG_ERROR };
	int ret;

	if (sp->engine)
		return 0;
	ret = fl_engine_new(&eo, &sp->engine);
	if (!ret)
		ret = fl_engine_start(sp->engine);
	sp->engine_pid = getpid();
	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: cannot start a fault engine: %s", sp->name, strerror(-ret));
		sp->engine = fl_engine_free(sp->engine);
	}
	return ret;
}

static void free_link_region(struct fl__link *l)
{
	if (l->region && !l->vtpl)
		seg_absorb(l->seg, l->region);
	l->region = fl_region_free(l->region);
	l->vtpl = fl_template_free(l->vtpl);
}

/* The template an attachment of `version` maps: a fresh page cache over
 * that version's image of the segment. */
static int version_template(struct fl_space *sp, const struct fl__version *v, const struct fl__seg *s,
			    struct fl_template **ret)
{
	const struct fl__mseg *ms = NULL;
	char path[PATH_MAX];
	struct fl__seg *tmp;
	int r;

	for (unsigned i = 0; i < v->nsegs && !ms; i++)
		if (!strcmp(v->segs[i].name, s->name))
			ms = &v->segs[i];
	if (!ms || ms->base != s->base || ms->length != s->length || ms->mem != s->mem) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: segment %s is not in version %" PRIu64 " as it is now",
			sp->name, s->name, v->number);
		return -ENOENT;
	}
	r = fl__space_image_path(sp, ms->image, path, sizeof(path));
	if (r)
		return r;
	r = seg_from_image(&sp->log, ms, path, &tmp);
	if (r)
		return r;
	/* The segment object was only a way to open and check the image. */
	*ret = tmp->tpl;
	tmp->tpl = NULL;
	seg_unref(tmp);
	return 0;
}

/*
 * A live commit write-protects a shared read-write attachment of the live
 * segments, so such a region is registered for write-protect faults too
 * where the kernel has them on this memory (registering a range again
 * with the same uffd sets its modes). That is done at the first live
 * commit, not at attach: attach stays one registration per segment.
 * Without, the attachment works as before and a live commit says what is
 * missing.
 */
static bool register_wp(struct fl_space *sp, struct fl_region *r);

bool fl__space_link_wp(struct fl_space *sp, struct fl__link *l)
{
	if (!l->wp && l->wp_able && l->region)
		l->wp = register_wp(sp, l->region);
	return l->wp;
}

static bool register_wp(struct fl_space *sp, struct fl_region *r)
{
	const uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	int ret;

	if ((fl_engine_features(sp->engine) & need) != need)
		return false;
	ret = fl_uffd_register(fl__region_space(r)->uffd, fl_region_addr(r), fl_region_length(r),
			       FL_REG_MISSING | FL_REG_MINOR | FL_REG_WP, NULL);
	if (ret)
		fl__log(&sp->log, FL_LOG_DEBUG, "segment %s: no write-protect registration (%s): no live commit",
			r->name, strerror(-ret));
	return !ret;
}

/* Map link l's segment (or a version of it) at `addr` (NULL: anywhere). */
static int map_link(struct fl_space *sp, struct fl__link *l, const struct fl__version *v, unsigned flags, void *addr,
		    struct fl_region **ret_region)
{
	const struct fl_template *tpl = l->seg->tpl;
	struct fl_template *vtpl = NULL;
	struct fl_region *r;
	int ret;

	if (v) {
		ret = version_template(sp, v, l->seg, &vtpl);
		if (ret)
			return ret;
		tpl = vtpl;
	}
	ret = fl__template_region_new(sp->engine, tpl, (flags & FL_ATTACH_PRIVATE) ? FL_REGION_PRIVATE : 0, addr,
				      l->seg->name, &r);
	if (!ret && (flags & FL_ATTACH_RDONLY)) {
		ret = fl__mprotect(fl_region_addr(r), fl_region_length(r), PROT_READ);
		if (ret)
			r = fl_region_free(r);
	}
	if (ret) {
		if (ret == -EEXIST)
			fl__log(&sp->log, FL_LOG_ERROR, "segment %s: 0x%" PRIx64 "+%" PRIu64 " is in use in this process",
				l->seg->name, l->seg->base, l->seg->length);
		else
			fl__log(&sp->log, FL_LOG_ERROR, "segment %s: cannot map it: %s", l->seg->name, strerror(-ret));
		fl_template_free(vtpl);
		return ret;
	}
	l->vtpl = vtpl;
	l->wp = false;
	l->wp_able = !v && !(flags & (FL_ATTACH_PRIVATE | FL_ATTACH_RDONLY));
	*ret_region = r;
	return 0;
}

static int attach_check(struct fl_space *sp, const struct fl_attach_opts *o, const struct fl__version **ret_v)
{
	*ret_v = NULL;
	if (o->flags & ~(FL_ATTACH_PRIVATE | FL_ATTACH_RDONLY))
		return -EINVAL;
	if (sp->attached) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s is attached already", sp->name);
		return -EALREADY;
	}
	if (!sp->nlinks) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s has no segment", sp->name);
		return -EINVAL;
	}
	if (o->version) {
		*ret_v = fl__manifest_find(&sp->man, o->version);
		if (!*ret_v) {
			fl__log(&sp->log, FL_LOG_ERROR, "space %s has no version %" PRIu64, sp->name, o->version);
			return -ENOENT;
		}
		if (!(o->flags & (FL_ATTACH_PRIVATE | FL_ATTACH_RDONLY))) {
			fl__log(&sp->log, FL_LOG_ERROR, "space %s: a version is attached read-only or private",
				sp->name);
			return -EINVAL;
		}
	}
	return space_engine(sp);
}

int fl_space_attach(struct fl_space *sp, const struct fl_attach_opts *opts)
{
	const struct fl__version *v;
	struct fl_attach_opts o;
	int ret;

	if (!sp)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (!ret)
		ret = attach_check(sp, &o, &v);
	if (ret)
		return ret;
	for (unsigned i = 0; i < sp->nlinks && !ret; i++) {
		struct fl__link *l = &sp->links[i];
		ret = map_link(sp, l, v, o.flags, (void *)(uintptr_t)l->seg->base, &l->region);
	}
	if (ret) {
		for (unsigned i = 0; i < sp->nlinks; i++)
			free_link_region(&sp->links[i]);
		return ret;
	}
	sp->attached = true;
	sp->attach_flags = o.flags;
	sp->attached_version = o.version;
	return 0;
}

int fl_space_detach(struct fl_space *sp)
{
	if (!sp)
		return -EINVAL;
	if (!sp->attached) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s is not attached", sp->name);
		return -ENOTCONN;
	}
	for (unsigned i = 0; i < sp->nlinks; i++)
		free_link_region(&sp->links[i]);
	sp->attached = false;
	sp->attached_version = 0;
	return 0;
}

/* The region's start address, as the engine last moved it. */
static uint64_t region_start(struct fl_region *r)
{
	uint64_t a;

	pthread_rwlock_rdlock(&r->engine->lock);
	a = (uintptr_t)r->addr;
	pthread_rwlock_unlock(&r->engine->lock);
	return a;
}

/*
 * mremap returns once the engines have *read* its REMAP (new region) and
 * UNMAP (old region) events, not once they have handled them: wait for
 * that, so the old region is no longer indexed (freeing it then unmaps
 * nothing) and the new one knows its address. Handling takes a lock and
 * a few index updates: bounded by 10 s only so that a stuck engine is an
 * error, not a hang.
 */
static int wait_moved(struct fl_region *to, struct fl_region *from, uint64_t base)
{
	uint64_t end = fl__now_ns() + 10000000000ull;

	while (region_start(to) != base || !atomic_load(&from->t.dead)) {
		if (fl__now_ns() > end)
			return -ETIMEDOUT;
		sched_yield();
	}
	return 0;
}

int fl_space_switch(struct fl_space *from, struct fl_space *to, const struct fl_attach_opts *opts)
{
	const uint64_t need = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP;
	const struct fl__version *v;
	struct fl_attach_opts o;
	struct fl__link **pair;
	int ret;

	if (!from || !to || from == to)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!from->attached) {
		fl__log(&from->log, FL_LOG_ERROR, "space %s is not attached", from->name);
		return -ENOTCONN;
	}
	ret = attach_check(to, &o, &v);
	if (ret)
		return ret;
	/* Without the events the registration would not follow mremap.
	 * Without POISON, a fault on the moved range that the engine reads
	 * before the REMAP event cannot be told from a fault outside every
	 * region (POISON answers EAGAIN while the mm is changing; the
	 * fallback, SIGBUS to the thread, would kill a reader). */
	if ((from->engine->features & need) != need || (to->engine->features & need) != need ||
	    !(to->engine->features & UFFD_FEATURE_POISON)) {
		fl__log(&to->log, FL_LOG_ERROR, "switch %s -> %s: the kernel lacks %s", from->name, to->name,
			(to->engine->features & need) == need ? "UFFDIO_POISON (Linux 6.6)" : "REMAP/UNMAP events");
		return -EOPNOTSUPP;
	}
	if (to->nlinks != from->nlinks) {
		fl__log(&to->log, FL_LOG_ERROR, "cannot switch from %s to %s: %u segments, not %u", from->name,
			to->name, to->nlinks, from->nlinks);
		return -EINVAL;
	}
	pair = calloc(to->nlinks, sizeof(*pair));
	if (!pair)
		return -ENOMEM;
	for (unsigned i = 0; i < to->nlinks && !ret; i++) {
		const struct fl__seg *s = to->links[i].seg;
		for (unsigned k = 0; k < from->nlinks && !pair[i]; k++) {
			const struct fl__seg *f = from->links[k].seg;
			if (f->base == s->base && f->length == s->length && f->mem == s->mem)
				pair[i] = &from->links[k];
		}
		if (!pair[i]) {
			fl__log(&to->log, FL_LOG_ERROR, "cannot switch from %s to %s: segment %s (0x%" PRIx64 "+%" PRIu64
				") covers no segment of %s", from->name, to->name, s->name, s->base, s->length,
				from->name);
			ret = -EINVAL;
		}
	}
	/* Everything that can fail, before anything is replaced. */
	for (unsigned i = 0; i < to->nlinks && !ret; i++)
		ret = map_link(to, &to->links[i], v, o.flags, NULL, &to->links[i].region);
	if (ret) {
		for (unsigned i = 0; i < to->nlinks; i++)
			free_link_region(&to->links[i]);
		free(pair);
		return ret;
	}
	for (unsigned i = 0; i < to->nlinks; i++) {
		struct fl__link *l = &to->links[i];
		ret = fl__mremap_fixed(fl_region_addr(l->region), l->seg->length, (void *)(uintptr_t)l->seg->base);
		if (!ret)
			ret = wait_moved(l->region, pair[i]->region, l->seg->base);
		if (ret) {
			/* Not reachable short of the kernel running out of
			 * memory: what moved is `to`'s, the rest `from`'s. */
			fl__log(&to->log, FL_LOG_ERROR, "switch %s -> %s: segment %s: %s", from->name, to->name,
				l->seg->name, strerror(-ret));
			for (unsigned k = i; k < to->nlinks; k++)
				free_link_region(&to->links[k]);
			to->attached = i > 0;
			to->attach_flags = o.flags;
			to->attached_version = o.version;
			free(pair);
			return -EIO;
		}
		free_link_region(pair[i]);
	}
	free(pair);
	from->attached = false;
	from->attached_version = 0;
	to->attached = true;
	to->attach_flags = o.flags;
	to->attached_version = o.version;
	return 0;
}

/* ---- fork --------------------------------------------------------------- */

int fl_space_fork(const struct fl_space *origin, uint64_t version, const struct fl_space_opts *opts,
		  struct fl_space **ret_space)
{
	const struct fl__version *v;
	struct fl_space_opts o;
	struct fl_space *sp;
	int ret;

	if (!origin || !opts || !ret_space)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!origin->man.nversions) {
		fl__log(&origin->log, FL_LOG_ERROR, "space %s has no committed version to fork", origin->name);
		return -EINVAL;
	}
	v = version ? fl__manifest_find(&origin->man, version) : &origin->man.versions[origin->man.nversions - 1];
	if (!v) {
		fl__log(&origin->log, FL_LOG_ERROR, "space %s has no version %" PRIu64, origin->name, version);
		return -ENOENT;
	}
	ret = space_alloc(&o, o.name, &sp);
	if (ret)
		return ret;
	ret = load_version(sp, origin, v);
	if (!ret && o.dir) {
		/* Version 1 of the fork is the origin's images, by absolute path. */
		struct fl__version fv = { .number = 1, .nroots = v->nroots };
		memcpy(fv.roots, v->roots, sizeof(v->roots));
		fv.nsegs = v->nsegs;
		fv.segs = calloc(v->nsegs ? v->nsegs : 1, sizeof(*fv.segs));
		ret = fv.segs ? 0 : -ENOMEM;
		for (unsigned i = 0; !ret && i < v->nsegs; i++) {
			fv.segs[i] = v->segs[i];
			ret = fl__space_image_path(origin, v->segs[i].image, fv.segs[i].image,
						   sizeof(fv.segs[i].image));
		}
		if (!ret)
			ret = fl__manifest_add_version(&sp->man, &fv);
		free(fv.segs);
		if (!ret)
			ret = make_dir(sp, o.dir);
	}
	if (ret) {
		fl_space_free(sp);
		return ret;
	}
	*ret_space = sp;
	return 0;
}

/* ---- for faultlined (space-share.h) ------------------------------------- */

int fl__space_segment_fd(const struct fl_space *sp, unsigned index)
{
	if (!sp || index >= sp->nlinks)
		return -ENOENT;
	return fl_template_fd(sp->links[index].seg->tpl);
}

int fl__space_segment_region_new(const struct fl_space *sp, unsigned index, struct fl_engine *e,
				 const struct fl_region_opts *o, struct fl_region **ret_region)
{
	struct fl_region_opts ro;
	const struct fl_template *t;

	if (!sp || !o || index >= sp->nlinks)
		return -ENOENT;
	t = sp->links[index].seg->tpl;
	ro = *o;
	ro.sz = sizeof(ro);
	ro.memfd = fl_template_fd(t);
	ro.store = fl__template_store(t, &ro.store_offset);
	return fl__region_new_pc(e, &ro, false, fl__template_pcache(t), ret_region);
}

int fl__space_root_at(const struct fl_space *sp, unsigned i, char *ret_name, uint64_t *ret_value)
{
	if (!sp || i >= sp->nroots)
		return -ENOENT;
	snprintf(ret_name, FL_SPACE_NAME_MAX + 1, "%s", sp->roots[i].name);
	*ret_value = sp->roots[i].value;
	return 0;
}

int fl__space_segment_adopt(struct fl_space *sp, unsigned index, int memfd)
{
	struct fl__seg *s;
	struct fl_template *t;
	int ret;

	if (!sp || index >= sp->nlinks)
		return -ENOENT;
	s = sp->links[index].seg;
	/* Another space, or a mapping here, holds the old page cache: its
	 * pages would part from the adopted one's. */
	if (sp->attached || atomic_load(&s->refs) > 1)
		return -EBUSY;
	ret = fl__template_with_memfd(s->tpl, memfd, &t);
	if (ret)
		return ret;
	fl_template_free(s->tpl);
	s->tpl = t;
	return 0;
}

void fl__space_segment_absorb(struct fl_space *sp, unsigned index, const struct fl_region *r)
{
	struct fl__seg *s;
	uint64_t n;

	if (!sp || !r || index >= sp->nlinks)
		return;
	s = sp->links[index].seg;
	if (r->page_size != s->psz)
		return;
	n = FL_MIN((uint64_t)r->npages, s->npages);
	for (uint64_t i = 0; i < n / 64; i++)
		s->filled[i] |= atomic_load(&r->cached[i]);
	for (uint64_t p = n / 64 * 64; p < n; p++)
		if (fl__bit_test(r->cached, p))
			s->filled[p / 64] |= 1ull << (p % 64);
}
