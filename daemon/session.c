// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * One client session: the manager protocol's requests (HELLO, OPEN,
 * ATTACH, DETACH, STATS, CLAIM) and the fork hook that lets a forked child
 * claim its own uffd. Every request is checked against the session's state
 * and limits; a malformed one ends that session only.
 */
#include "faultlined.h"
#include "flutil.h"
#include "space-share.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t fld_random64(void)
{
	uint64_t v = 0;

	while (!v) {
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = fl__now_ns() ^ ((uint64_t)getpid() << 32);
	}
	return v;
}

/* Is fd a userfaultfd, and which features does it have? The kernel's word,
 * not the client's: /proc/self/fdinfo shows "API: api:features:ioctls". */
int fld_uffd_features(int fd, uint64_t *ret)
{
	char path[64], line[256], link[64];
	unsigned long long api, feat;
	bool found = false;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = 0;
	if (strcmp(link, "anon_inode:[userfaultfd]"))
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "API:\t%llx:%llx:", &api, &feat) == 2)
			found = true;
	fclose(f);
	if (!found)
		return -EBADF;
	/* Bit 31 is the kernel's own "API done" mark. */
	*ret = feat & ~(1ull << 31);
	return 0;
}

static int reply(struct fld_session *s, uint16_t type, uint32_t seq, const void *p, size_t n, int fd)
{
	return fl__mgr_send(s->sock, type, seq, p, n, fd);
}

/* ---- HELLO ------------------------------------------------------------------ */

static int on_hello(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p)
{
	struct fl__mgr_hello m;
	struct fl__mgr_welcome w;
	uint8_t out[24];

	if (s->hello || fl__mgr_hello_decode(p, h->length, &m))
		return -EBADMSG;
	s->hello = true;
	s->kind = m.role == FL_MGR_ROLE_OBSERVER ? FLD_OBSERVER : FLD_CLIENT;
	if (m.token) {
		for (struct fld_session *o = d->sessions; o; o = o->next)
			if (o != s && o->token == m.token)
				return fld_reply_error(s, 0, EBUSY, "session %llx is live", (unsigned long long)m.token);
		/* A session of a daemon that died: the client brings its map. */
		s->token = m.token;
		d->resumed++;
		fld_log(0, "client %llu (pid %d): resumes session %016llx", (unsigned long long)s->id, s->pid,
			(unsigned long long)m.token);
	} else {
		s->token = fld_random64();
	}
	w = (struct fl__mgr_welcome){ .pid = (uint32_t)getpid(), .max_ranges = d->cfg.max_ranges,
				      .token = s->token, .max_bytes = d->cfg.max_bytes };
	fl__mgr_welcome_encode(out, &w);
	return reply(s, FL_MGR_WELCOME, h->seq, out, 24, -1);
}

/* ---- OPEN -------------------------------------------------------------------- */

static int on_open(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p, int fd)
{
	struct fl__mgr_open m;
	struct fl__mgr_source out = { 0 };
	struct fld_source src = { 0 }, *ns;
	struct fld_image *im = NULL;
	uint8_t buf[24];
	int r;

	if (s->kind != FLD_CLIENT || fl__mgr_open_decode(p, h->length, &m))
		return -EBADMSG;
	if ((m.flags & FL_MGR_OPEN_RESUME) != (fd >= 0) || (fd >= 0 && m.kind == FL_MGR_SRC_IMAGE))
		return -EBADMSG;
	if (s->nsources >= d->cfg.max_ranges)
		return fld_reply_error(s, h->seq, EDQUOT, "more than %u sources", d->cfg.max_ranges);
	if (m.kind == FL_MGR_SRC_SEGMENT) {
		char why[FL_MGR_MAX_ERRMSG + 1];
		r = fld_segment_open(d, s, m.name, m.region, fd, &src, why, sizeof(why));
		if (r)
			return fld_reply_error(s, h->seq, -r, "%s", why);
		ns = realloc(s->sources, (s->nsources + 1) * sizeof(*ns));
		if (!ns) {
			fld_segment_put(&src);
			return fld_reply_error(s, h->seq, ENOMEM, "out of memory");
		}
		src.id = s->nsources + 1;
		s->sources = ns;
		s->sources[s->nsources++] = src;
		out = (struct fl__mgr_source){ .id = src.id, .mem = src.mem, .length = src.length,
					       .page_size = src.page_size };
		fl__mgr_source_encode(buf, &out);
		fld_log(1, "client %llu: source %u: space %s segment %u%s", (unsigned long long)s->id, src.id, m.name,
			m.region, fd >= 0 ? " (resumed)" : "");
		/* A resuming client has its page cache already. */
		return reply(s, FL_MGR_SOURCE, h->seq, buf, 24, fd >= 0 ? -1 : fld_segment_fd(&src, s));
	}
	r = fld_image_get(d, m.name, &im);
	if (r)
		return fld_reply_error(s, h->seq, -r, "image %s: %s", m.name, strerror(-r));
	if (m.region >= im->nregions) {
		unsigned n = im->nregions;
		fld_image_put(d, im);
		return fld_reply_error(s, h->seq, ERANGE, "image %s has %u regions", m.name, n);
	}
	src = (struct fld_source){ .id = s->nsources + 1, .kind = m.kind, .image = im, .region = m.region,
				   .length = im->lengths[m.region], .page_size = 4096 };
	if (m.kind == FL_MGR_SRC_TEMPLATE) {
		r = fld_template_get(d, im, m.region, fd, &src.tpl);
		if (r) {
			fld_image_put(d, im);
			return fld_reply_error(s, h->seq, -r, "template %s/%u: %s", m.name, m.region, strerror(-r));
		}
		src.length = fl_template_length(src.tpl->tpl);
	}
	ns = realloc(s->sources, (s->nsources + 1) * sizeof(*ns));
	if (!ns) {
		fld_template_put(d, src.tpl);
		fld_image_put(d, im);
		return fld_reply_error(s, h->seq, ENOMEM, "out of memory");
	}
	s->sources = ns;
	s->sources[s->nsources++] = src;
	out = (struct fl__mgr_source){ .id = src.id, .mem = src.tpl ? 1 : 0, .length = src.length,
				       .page_size = src.page_size };
	fl__mgr_source_encode(buf, &out);
	fld_log(1, "client %llu: source %u: %s %s region %u", (unsigned long long)s->id, src.id,
		src.tpl ? "template" : "image", m.name, m.region);
	/* A template's page cache, read-only: a client must not be able to
	 * write into what other clients map. A resuming client has it. */
	return reply(s, FL_MGR_SOURCE, h->seq, buf, 24, src.tpl && fd < 0 ? src.tpl->ro_fd : -1);
}

/* ---- ATTACH ------------------------------------------------------------------ */

static int add_region(struct fld *d, struct fld_session *s, const struct fl__mgr_range *r,
		      struct fl_region **ret_region)
{
	struct fl_region_opts o = {
		.sz = sizeof(o), .length = r->len, .mem = FL_MEM_ANON, .mode = FL_MODE_MISSING,
		.flags = FL_REGION_FOREIGN, .addr = (void *)(uintptr_t)r->addr, .space = s->space,
		.prefetch_max = d->cfg.max_inflight, .name = "client", .memfd = -1,
	};
	struct fl_region *reg;
	int ret;

	if (r->source && s->sources[r->source - 1].shared) {
		const struct fld_source *src = &s->sources[r->source - 1];
		/* The segment's page cache, filled from its image; shared
		 * unless the attach is private (copy-on-write). */
		o.mem = src->mem == 2 ? FL_MEM_HUGETLB : FL_MEM_SHMEM;
		o.mode = FL_MODE_MINOR;
		o.flags |= FL_REGION_MEMFD | (src->private_map ? FL_REGION_PRIVATE : 0);
		o.name = src->shared->name;
		ret = fld_segment_region_new(src, d->engine, &o, &reg);
		if (ret)
			return ret;
		s->nregions++;
		*ret_region = reg;
		return 0;
	} else if (r->source) {
		const struct fld_source *src = &s->sources[r->source - 1];
		ret = fld_image_store(src->image, src->region, &o.store);
		if (ret)
			return ret;
		o.store_offset = r->offset;
		o.name = src->image->name;
		if (src->tpl) {
			o.mem = FL_MEM_SHMEM;
			o.mode = FL_MODE_MINOR;
			o.flags |= FL_REGION_PRIVATE | FL_REGION_MEMFD;
			o.memfd = fl_template_fd(src->tpl->tpl);
		}
	} else if (r->flags & FL_MGR_RANGE_BEACON) {
		o.name = "beacon";
		o.flags |= FL_REGION_NO_PREFETCH;
	}
	ret = fl_region_new(d->engine, &o, &reg);
	if (ret)
		return ret;
	s->nregions++;
	*ret_region = reg;
	return 0;
}

static int on_attach(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p, int fd)
{
	struct fl__mgr_range *ranges = d->ranges;
	struct fl_region **added = d->added;
	struct fl__mgr_attach a;
	uint64_t bytes = 0, features;
	bool first = s->space < 0;
	char why[FL_MGR_MAX_ERRMSG + 1];
	uint8_t out[8];
	int r;

	if (s->kind != FLD_CLIENT || fl__mgr_attach_decode(p, h->length, ranges, &a))
		return -EBADMSG;
	if (first != (fd >= 0))
		return -EBADMSG;	/* the first ATTACH brings the uffd, later ones do not */
	r = fld_attach_check(&d->cfg, s, ranges, a.nranges, &bytes, why, sizeof(why));
	if (r)
		return fld_reply_error(s, h->seq, -r, "%s", why);
	if (first) {
		r = fld_uffd_features(fd, &features);
		if (r)
			return fld_reply_error(s, h->seq, EBADF, "not a userfaultfd");
		r = fl_engine_adopt(d->engine, fd, s->pid, features);
		if (r < 0)
			return fld_reply_error(s, h->seq, -r, "adopt: %s", strerror(-r));
		s->space = r;
		fld_space_set(d, s->space, s->id, 0);
	}
	for (uint32_t i = 0; i < a.nranges; i++) {
		r = add_region(d, s, &ranges[i], &added[i]);
		if (r) {
			/* An ATTACH is served whole or not at all: what this
			 * request added goes again, so that nothing is served
			 * that the limits did not count (a client repeating a
			 * half-failing ATTACH got memory for free). The client
			 * gets no address before ATTACHED, so nothing of it is
			 * in use yet. */
			for (uint32_t k = 0; k < i; k++) {
				fl_region_free(added[k]);
				s->nregions--;
			}
			fl_engine_wake_all(d->engine, s->space);
			return fld_reply_error(s, h->seq, -r, "range %u: %s", i, strerror(-r));
		}
	}
	for (uint32_t i = 0; i < a.nranges; i++) {
		if (ranges[i].flags & FL_MGR_RANGE_BEACON) {
			s->beacon = ranges[i].addr;
			fld_space_set(d, s->space, s->id, s->beacon);
		}
	}
	for (uint32_t i = 0; i < a.nranges; i++) {
		struct fld_source *src = ranges[i].source ? &s->sources[ranges[i].source - 1] : NULL;
		/* Out of memory: a commit may miss a page this region zeroes. */
		if (src && src->shared && fld_segment_add_region(src, added[i]))
			fld_log(0, "client %llu: out of memory tracking range %u", (unsigned long long)s->id, i);
	}
	s->nranges += a.nranges;
	s->bytes += bytes;
	/* Serve, then wake: faults that waited on a dead daemon come again. */
	r = fl_engine_wake_all(d->engine, s->space);
	if (r && r != -ESRCH)
		fld_log(0, "client %llu: wake: %s", (unsigned long long)s->id, strerror(-r));
	fld_log(0, "client %llu (pid %d): attached %u ranges, %llu MiB (space %d)", (unsigned long long)s->id,
		s->pid, a.nranges, (unsigned long long)(bytes >> 20), s->space);
	fl__mgr_u64_encode(out, s->nranges);
	return reply(s, FL_MGR_ATTACHED, h->seq, out, 8, -1);
}

/* ---- DETACH, STATS, CLAIM --------------------------------------------------------- */

static int on_detach(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h)
{
	int r;

	if (s->kind != FLD_CLIENT || h->length)
		return -EBADMSG;
	if (s->space < 0)
		return fld_reply_error(s, h->seq, ENOTCONN, "not attached");
	fld_segments_absorb(s);
	r = fl_engine_release(d->engine, s->space, FL_RELEASE_POPULATE);
	fld_log(0, "client %llu (pid %d): detached after delivering every page%s%s", (unsigned long long)s->id,
		s->pid, r ? ": " : "", r ? strerror(-r) : "");
	fld_space_set(d, s->space, 0, 0);
	s->space = -1;
	s->nregions = 0;
	return reply(s, FL_MGR_DETACHED, h->seq, NULL, 0, -1);
}

static int on_stats(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h)
{
	char *json;
	int r;

	if (h->length)
		return -EBADMSG;
	json = fld_stats_json(d);
	if (!json)
		return fld_reply_error(s, h->seq, ENOMEM, "stats");
	if (strlen(json) > FL_MGR_MAX_PAYLOAD)
		r = fld_reply_error(s, h->seq, EMSGSIZE, "stats larger than a message");
	else
		r = reply(s, FL_MGR_STATS_JSON, h->seq, json, strlen(json), -1);
	free(json);
	return r;
}

static int on_claim(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p)
{
	struct fld_fork *f = NULL, **pp;
	uint64_t token;
	uint8_t out[8];
	int fd, r;

	if (s->kind != FLD_CLIENT || s->space >= 0 || fl__mgr_u64_decode(p, h->length, &token) || !token)
		return -EBADMSG;
	pthread_mutex_lock(&d->mu);
	for (pp = &d->forks; *pp; pp = &(*pp)->next) {
		if ((*pp)->token == token) {
			f = *pp;
			*pp = f->next;
			break;
		}
	}
	pthread_mutex_unlock(&d->mu);
	if (!f)
		return fld_reply_error(s, h->seq, ENOENT, "no fork with that token");
	/* Off the list, not yet sent: the child's uffd dies with us. */
	fld_crash_point("claim");
	fd = fl_engine_space_fd(d->engine, f->space);
	if (fd < 0) {
		free(f);
		return fld_reply_error(s, h->seq, ESRCH, "the child's space is gone");
	}
	s->space = f->space;
	s->beacon = f->beacon;
	s->parent_id = f->parent_id;
	fld_space_set(d, s->space, s->id, s->beacon);
	d->claimed++;
	fld_log(0, "client %llu (pid %d): forked child of client %llu claims space %d", (unsigned long long)s->id,
		s->pid, (unsigned long long)f->parent_id, f->space);
	free(f);
	fl__mgr_u64_encode(out, s->token);
	r = reply(s, FL_MGR_CLAIMED, h->seq, out, 8, fd);
	/* Sent: the child's uffd is in its socket's queue, not only ours. */
	fld_crash_point("claimed");
	return r;
}

int fld_session_message(struct fld *d, struct fld_session *s)
{
	struct fl__mgr_hdr h;
	const uint8_t *p = d->buf + FL_MGR_HDR_SIZE;
	int fd = -1, n, r;

	n = fl__mgr_recv(s->sock, d->buf, &h, &fd, 0);
	if (n == -EAGAIN || n == -ETIMEDOUT)
		return 0;
	if (n < 0) {
		if (n != -ECONNRESET) {
			d->bad_messages++;
			fld_reply_error(s, 0, -n == EMSGSIZE ? EMSGSIZE : EBADMSG, "malformed message: %s",
					strerror(-n));
		}
		return n;
	}
	if (s->refuse_err) {
		fl__close(fd);
		fld_reply_error(s, 0, s->refuse_err, "%s", s->refuse_msg);
		return -EPERM;
	} else if (!s->hello && h.type != FL_MGR_HELLO) {
		r = -EBADMSG;
	} else {
		switch (h.type) {
		case FL_MGR_HELLO: r = fd >= 0 ? -EBADMSG : on_hello(d, s, &h, p); break;
		/* on_open reopens a resumed page cache: the fd stays ours. */
		case FL_MGR_OPEN: r = on_open(d, s, &h, p, fd); break;
		case FL_MGR_ATTACH:
			r = on_attach(d, s, &h, p, fd);
			/* The engine owns an adopted fd; otherwise it is ours. */
			if (s->space < 0 || r < 0)
				fl__close(fd);
			fd = -1;
			break;
		case FL_MGR_DETACH: r = on_detach(d, s, &h); break;
		case FL_MGR_STATS: r = on_stats(d, s, &h); break;
		case FL_MGR_CLAIM: r = on_claim(d, s, &h, p); break;
		case FL_MGR_SPACE_OPEN: r = fld_space_open(d, s, &h, p); break;
		case FL_MGR_SPACE_CLOSE:
			/* The client unmapped the segments first: their UNMAP
			 * events are read, maybe not handled yet, and an attach
			 * at the same addresses may follow this reply. */
			if (s->space >= 0)
				fl__engine_events_barrier(d->engine, s->space);
			r = fld_space_close(d, s, &h, p);
			break;
		case FL_MGR_SPACE_COMMIT: r = fld_space_commit(d, s, &h, p); break;
		default: r = -EBADMSG;	/* a daemon-to-client type */
		}
	}
	fl__close(fd);
	if (r == -EBADMSG) {
		d->bad_messages++;
		fld_reply_error(s, 0, EBADMSG, "bad %s message (type %u, %u bytes)",
				s->hello ? "request" : "first", h.type, h.length);
	}
	return r;
}

/* ---- events (handler threads) ------------------------------------------------------ */

void fld_on_event(void *ctx, int space, const struct fl_event *event)
{
	struct fld *d = ctx;
	uint64_t owner = 0, beacon = 0;
	int new_space = event->new_space;

	fld_space_get(d, space, &owner, &beacon);
	switch (event->kind) {
	case FL_EVENT_FORK: {
		struct fld_fork *f = calloc(1, sizeof(*f));
		uint64_t page[512] = { FL_MGR_BEACON_MAGIC };
		int fd, r = -ENOMEM;

		/* The child's uffd is only ours, and its beacon still empty. */
		fld_crash_point("fork-event");
		/* Unclaimed, the child still has the beacon for its own forks. */
		fld_space_set(d, new_space, 0, beacon);
		fd = fl_engine_space_fd(d->engine, new_space);
		if (f && beacon && fd >= 0) {
			f->token = page[1] = fld_random64();
			f->space = new_space;
			f->parent_id = owner;
			f->beacon = beacon;
			/* Before the child's faults are served (see on_event in
			 * fl_engine_new(3)): the child finds its token there. */
			/* EAGAIN: the fork is still finishing in the kernel
			 * (mmap_changing); it does so without us. */
			for (int i = 0; i < 1000; i++) {
				r = fl_uffd_copy(fd, (void *)(uintptr_t)beacon, page, sizeof(page), 0, NULL);
				if (r != -EAGAIN)
					break;
				sched_yield();
			}
		}
		if (!r) {
			pthread_mutex_lock(&d->mu);
			f->next = d->forks;
			d->forks = f;
			pthread_mutex_unlock(&d->mu);
			/* The token written, the fork claimable, nobody claimed it. */
			fld_crash_point("fork-listed");
		} else {
			free(f);
		}
		if (r)
			fld_log(0, "client %llu: fork: the child is served as space %d (no beacon: %s; it cannot "
				"claim its uffd)", (unsigned long long)owner, new_space,
				!beacon ? "none registered" : strerror(-r));
		else
			fld_log(0, "client %llu: fork: the child is served as space %d", (unsigned long long)owner,
				new_space);
		break;
	}
	case FL_EVENT_REMAP:
		fld_log(0, "client %llu: mremap 0x%llx -> 0x%llx (%llu KiB)", (unsigned long long)owner,
			(unsigned long long)event->start, (unsigned long long)event->remap_to,
			(unsigned long long)((event->end - event->start) >> 10));
		break;
	case FL_EVENT_REMOVE:
	case FL_EVENT_UNMAP:
		fld_log(event->kind == FL_EVENT_REMOVE ? 1 : 0, "client %llu: %s 0x%llx-0x%llx",
			(unsigned long long)owner, event->kind == FL_EVENT_REMOVE ? "madvise remove" : "munmap",
			(unsigned long long)event->start, (unsigned long long)event->end);
		break;
	}
}
