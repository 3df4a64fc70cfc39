// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Address spaces shared between processes (fl_client_space_attach(3)). A
 * space NAME is the persistent space directory --spaces DIR/NAME. The
 * daemon opens it once (fl_space_open(3); an older version through
 * fl_space_fork(3)) and owns one page cache per segment; every attached
 * process maps that page cache and the daemon serves its MINOR faults, so
 * a page exists once however many processes attach it, and a write
 * through one process's shared mapping is in every other's at once.
 *
 * Permission is the space directory's, like a file's: the peer's uid and
 * gid (SO_PEERCRED) against its owner, group and mode bits; uid 0 may do
 * anything. Reading (a read-only or private attach) needs r, a shared
 * read-write attach needs r and w, a commit w. Read-only attachers get a
 * read-only reopen of the page cache, so the kernel itself refuses them a
 * writable shared mapping.
 */
#include "faultlined.h"
#include "flutil.h"
#include "space-share.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define MAY_READ 4u
#define MAY_WRITE 2u

static void space_log(enum fl_log_level level, const char *msg, void *ctx)
{
	struct fld *d = ctx;

	/* The last error lib/space gave is the cause a refusal names. */
	if (level <= FL_LOG_ERROR)
		snprintf(d->space_msg, sizeof(d->space_msg), "%s", msg);
	fld_log(1, "%s", msg);
}

static const char *access_word(unsigned want)
{
	return want & MAY_WRITE ? (want & MAY_READ ? "attach read-write" : "commit") : "attach";
}

static bool peer_may(const struct fld_session *s, const struct stat *st, unsigned want)
{
	unsigned bits;

	if (s->uid == 0)
		return true;
	if (s->uid == st->st_uid)
		bits = (st->st_mode >> 6) & 7;
	else if (s->gid == st->st_gid)
		bits = (st->st_mode >> 3) & 7;
	else
		bits = st->st_mode & 7;
	return (bits & want) == want;
}

/*
 * The space directory's owner, group and mode against the peer's. The
 * directory is opened (O_NOFOLLOW) and that very one checked; with
 * ret_dirfd the caller opens the space through it, so that the directory
 * checked is the one read even if NAME is swapped for a symlink meanwhile.
 */
static int check_access(struct fld *d, struct fld_session *s, const char *name, unsigned want, int *ret_dirfd,
			char *why, size_t whylen)
{
	struct stat st;
	int sfd, fd, r;

	sfd = open(d->cfg.spaces, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0) {
		r = -errno;
		snprintf(why, whylen, "space %s: %s: %s", name, d->cfg.spaces, strerror(-r));
		return r;
	}
	fd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	r = fd < 0 ? -errno : 0;
	fl__close(sfd);
	/* ENOENT, as for a missing one: to a client a symlink or a file
	 * there is no space, and one errno is less to document. */
	if (r == -ENOTDIR || r == -ELOOP) {
		snprintf(why, whylen, "space %s: %s/%s is not a space directory", name, d->cfg.spaces, name);
		return -ENOENT;
	}
	if (r) {
		snprintf(why, whylen, "space %s: %s in %s", name, r == -ENOENT ? "no such space" : strerror(-r),
			 d->cfg.spaces);
		return r;
	}
	if (fstat(fd, &st)) {
		r = -errno;
		fl__close(fd);
		return r;
	}
	if (!peer_may(s, &st, want)) {
		fl__close(fd);
		snprintf(why, whylen, "space %s: uid %u may not %s (owner %u, mode %04o)", name, (unsigned)s->uid,
			 access_word(want), (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		return -EACCES;
	}
	if (ret_dirfd)
		*ret_dirfd = fd;
	else
		fl__close(fd);
	return 0;
}

/* The fds open in this process (sorted, as /proc lists them). */
static int fd_list(int **ret, unsigned *ret_n)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int *v = NULL, *nv;
	unsigned n = 0, cap = 0;

	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(dir);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = atoi(e->d_name);
	}
	closedir(dir);
	*ret = v;
	*ret_n = n;
	return 0;
}

/*
 * The image files opening the space opened and keeps (segment images and
 * every parent in their chains, wherever the manifest or an image header
 * names them): the fds that are new since `before`, by the kernel's own
 * path of each (no symlink in it). Found this way rather than from the
 * manifest so that what is checked is what is read.
 */
static int record_images(struct fld_shared *sh, const int *before, unsigned nbefore)
{
	int *after = NULL;
	unsigned nafter = 0;
	int r = fd_list(&after, &nafter);

	for (unsigned i = 0; !r && i < nafter; i++) {
		char path[64], link[4096], **ni;
		struct stat st;
		bool old = false;
		ssize_t n;

		for (unsigned j = 0; j < nbefore && !old; j++)
			old = before[j] == after[i];
		if (old || fstat(after[i], &st) || !S_ISREG(st.st_mode))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", after[i]);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0 || link[0] != '/' || !strncmp(link, "/memfd:", 7))
			continue;
		link[n] = 0;
		ni = realloc(sh->images, (sh->nimages + 1) * sizeof(*ni));
		if (!ni) {
			r = -ENOMEM;
			break;
		}
		sh->images = ni;
		sh->images[sh->nimages] = strdup(link);
		r = sh->images[sh->nimages] ? 0 : -ENOMEM;
		sh->nimages += !r;
	}
	free(after);
	return r;
}

/*
 * Each image the space serves must be one the peer could attach from its
 * own space: read permission on the directory that holds it. A manifest
 * may name images by absolute path (a fork names its origin's), so
 * without this a user who owns a space directory could name another
 * user's private image and have the daemon serve it to him.
 */
static int check_images(const struct fld_session *s, const struct fld_shared *sh, char *why, size_t whylen)
{
	for (unsigned i = 0; i < sh->nimages; i++) {
		char dir[4096], *slash;
		struct stat st;

		snprintf(dir, sizeof(dir), "%s", sh->images[i]);
		slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = 0;
		else if (slash)
			*slash = 0;
		if (lstat(dir, &st) || !S_ISDIR(st.st_mode) || !peer_may(s, &st, MAY_READ)) {
			const char *img = sh->images[i];
			size_t n = strlen(img);
			/* The path's end names the image best when it is long. */
			if (n > 120)
				img += n - 120;
			snprintf(why, whylen, "space %s: uid %u may not read image %s%s", sh->name, (unsigned)s->uid,
				 n > 120 ? "..." : "", img);
			return -EACCES;
		}
	}
	return 0;
}

static void shared_free(struct fld_shared *sh)
{
	for (unsigned i = 0; sh->ro_fds && i < sh->nsegs; i++)
		fl__close(sh->ro_fds[i]);
	free(sh->ro_fds);
	free(sh->users);
	for (unsigned i = 0; i < sh->nimages; i++)
		free(sh->images[i]);
	free(sh->images);
	fl_space_free(sh->sp);
	free(sh);
}

/*
 * A committed version nobody has open and no source serves is let go (its
 * page caches, fds and images): a client could otherwise make the daemon
 * keep one per version it ever opened. The live version keeps its page
 * caches until the daemon exits: they hold the uncommitted shared writes.
 */
static void shared_sweep(struct fld *d)
{
	for (struct fld_shared **pp = &d->shared; *pp;) {
		struct fld_shared *sh = *pp;
		bool idle = sh->version && !sh->opens;

		for (unsigned i = 0; idle && i < sh->nsegs; i++)
			idle = !sh->users[i];
		if (!idle) {
			pp = &sh->next;
			continue;
		}
		*pp = sh->next;
		fld_log(0, "space %s: version %" PRIu64 " let go (no user left)", sh->name, sh->version);
		shared_free(sh);
	}
}

void fld_shared_free_all(struct fld *d)
{
	while (d->shared) {
		struct fld_shared *sh = d->shared;
		d->shared = sh->next;
		shared_free(sh);
	}
}

/*
 * The read-only fd of segment i's page cache. A memfd is made mode 0777:
 * anyone holding a read-only fd could open /proc/self/fd/N read-write. At
 * 0600 only the daemon's uid (and root) can: the kernel then holds a
 * read-only attacher to reading.
 */
static int ro_fd(struct fld_shared *sh, unsigned i)
{
	int fd = fl__space_segment_fd(sh->sp, i), nfd = -1, r;

	if (fchmod(fd, 0600))
		return -errno;
	r = fld_reopen(fd, O_RDONLY, &nfd);
	if (r)
		return r;
	fl__close(sh->ro_fds[i]);
	sh->ro_fds[i] = nfd;
	return 0;
}

/*
 * The name a segment's page cache (a memfd) carries: it says which space,
 * version and segment it is, so a page cache a client brings back on
 * resume can be told from another space's (same length, also ours). The
 * directory name, not the manifest's: a manifest names its space freely.
 * A client cannot rename a memfd, and one it makes itself is its own uid's.
 */
static void segment_memfd_name(const struct fld_shared *sh, unsigned index, char *buf, size_t len)
{
	if (sh->version)
		snprintf(buf, len, "fl-space:%s@%" PRIu64 ":%u", sh->name, sh->version, index);
	else
		snprintf(buf, len, "fl-space:%s:%u", sh->name, index);
}

/* A fresh page cache for segment i under segment_memfd_name(): lib/space
 * names its memfds after the segment, which another space shares. */
static int name_segment(struct fld_shared *sh, unsigned i)
{
	struct fl_segment_info si = { .sz = sizeof(si) };
	char nm[128];
	int fd = -1, r;

	r = fl_space_segment_info(sh->sp, i, &si);
	if (r)
		return r;
	segment_memfd_name(sh, i, nm, sizeof(nm));
	r = fl__memfd(nm, si.mem == FL_MEM_HUGETLB ? MFD_HUGETLB : 0, si.length, &fd);
	if (!r)
		r = fl__space_segment_adopt(sh->sp, i, fd);
	fl__close(fd);
	return r;
}

/*
 * lib/space reads the manifest by the path of /proc/self/fd/N, walked
 * again: the directory at that path after the open must still be the one
 * checked (the images are checked one by one besides).
 */
static int same_dir(int dirfd)
{
	char path[64], link[4096];
	struct stat a, b;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", dirfd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0 || fstat(dirfd, &a))
		return -EAGAIN;
	link[n] = 0;
	if (lstat(link, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return -EAGAIN;
	return 0;
}

/* Space `name` at `version` (0: live), opened on first use. */
static int shared_get(struct fld *d, const char *name, uint64_t version, int dirfd, struct fld_shared **ret,
		      char *why, size_t whylen)
{
	int *before = NULL;
	unsigned nbefore = 0;
	struct fl_space_opts so = { .sz = sizeof(so), .log = space_log, .log_ctx = d };
	struct fl_space_info info = { .sz = sizeof(info) };
	struct fld_shared *sh;
	char path[4096];
	int r;

	for (sh = d->shared; sh; sh = sh->next) {
		if (!strcmp(sh->name, name) && sh->version == version) {
			*ret = sh;
			return 0;
		}
	}
	/* The directory check_access() checked, not the name again. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dirfd);
	r = fd_list(&before, &nbefore);
	if (r)
		return r;
	sh = calloc(1, sizeof(*sh));
	if (!sh) {
		free(before);
		return -ENOMEM;
	}
	snprintf(sh->name, sizeof(sh->name), "%s", name);
	sh->version = version;
	d->space_msg[0] = 0;
	r = fl_space_open(path, &so, &sh->sp);
	if (!r)
		r = same_dir(dirfd);
	if (r == -EAGAIN)
		snprintf(d->space_msg, sizeof(d->space_msg), "space %s: its directory was replaced while it was "
			 "opened", name);
	if (!r && version) {
		/* A version is a space of its own: its page caches start from
		 * that version's images and are never committed. */
		struct fl_space *origin = sh->sp;
		sh->sp = NULL;
		so.name = name;
		r = fl_space_fork(origin, version, &so, &sh->sp);
		fl_space_free(origin);
	}
	if (!r)
		r = record_images(sh, before, nbefore);
	free(before);
	if (!r)
		r = fl_space_info(sh->sp, &info);
	if (!r && (!info.nsegments || info.nsegments > FL_MGR_MAX_SEGMENTS)) {
		snprintf(d->space_msg, sizeof(d->space_msg), "space %s has %u segments (commit a version with 1 to %u)",
			 name, info.nsegments, FL_MGR_MAX_SEGMENTS);
		r = -EINVAL;
	}
	if (!r) {
		sh->nsegs = info.nsegments;
		sh->opened_version = version ? version : info.version;
		sh->ro_fds = malloc(sh->nsegs * sizeof(*sh->ro_fds));
		sh->users = calloc(sh->nsegs, sizeof(*sh->users));
		r = sh->ro_fds && sh->users ? 0 : -ENOMEM;
		for (unsigned i = 0; sh->ro_fds && i < sh->nsegs; i++)
			sh->ro_fds[i] = -1;
	}
	for (unsigned i = 0; !r && i < sh->nsegs; i++) {
		r = name_segment(sh, i);
		if (!r)
			r = ro_fd(sh, i);
	}
	if (r) {
		snprintf(why, whylen, "%.150s", d->space_msg[0] ? d->space_msg : strerror(-r));
		shared_free(sh);
		return r;
	}
	sh->next = d->shared;
	d->shared = sh;
	fld_log(0, "space %s: opened at version %" PRIu64 " (%u segments)", name, sh->opened_version, sh->nsegs);
	*ret = sh;
	return 0;
}

static struct fld_session_space *session_space(struct fld_session *s, const char *name)
{
	for (unsigned i = 0; i < s->nspaces; i++)
		if (!s->spaces[i].closed && !strcmp(s->spaces[i].sh->name, name))
			return &s->spaces[i];
	return NULL;
}

int fld_space_open(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p)
{
	char why[FL_MGR_MAX_ERRMSG + 1];
	uint8_t out[16 + 24 * FL_MGR_MAX_SEGMENTS + 56 * FL_MGR_MAX_ROOTS];
	struct fl__mgr_space_open m;
	struct fl__mgr_space *sp;
	struct fld_session_space *ns;
	struct fld_shared *sh;
	unsigned slot, open_now = 0;
	bool reader;
	int r, n, dirfd = -1;

	if (s->kind != FLD_CLIENT)
		return -EBADMSG;
	r = fl__mgr_space_open_decode(p, h->length, &m);
	if (r == -EINVAL)
		return fld_reply_error(s, h->seq, EINVAL, "not a space name ([A-Za-z0-9._-], 1 to %u bytes)",
				       FL_MGR_MAX_SPACE_NAME);
	if (r)
		return -EBADMSG;
	reader = m.flags & (FL_MGR_SPACE_RDONLY | FL_MGR_SPACE_PRIVATE);
	if (session_space(s, m.name))
		return fld_reply_error(s, h->seq, EALREADY, "space %s is attached in this client already", m.name);
	for (unsigned i = 0; i < s->nspaces; i++)
		open_now += !s->spaces[i].closed;
	/* Each open space holds the daemon's page caches and fds: bounded
	 * per client like its sources. */
	if (open_now >= d->cfg.max_ranges)
		return fld_reply_error(s, h->seq, EDQUOT, "more than %u spaces open", d->cfg.max_ranges);
	if (m.version && !reader)
		return fld_reply_error(s, h->seq, EROFS, "space %s: version %" PRIu64 " is attached read-only or "
				       "private", m.name, m.version);
	r = check_access(d, s, m.name, reader ? MAY_READ : MAY_READ | MAY_WRITE, &dirfd, why, sizeof(why));
	if (r)
		return fld_reply_error(s, h->seq, -r, "%s", why);
	r = shared_get(d, m.name, m.version, dirfd, &sh, why, sizeof(why));
	fl__close(dirfd);
	if (!r && (r = check_images(s, sh, why, sizeof(why))))
		shared_sweep(d);
	if (r)
		return fld_reply_error(s, h->seq, -r, "%s", why);
	/* A closed slot is taken again: open and close in a loop must not
	 * grow the table. */
	for (slot = 0; slot < s->nspaces && !s->spaces[slot].closed; slot++)
		;
	ns = slot < s->nspaces ? s->spaces : realloc(s->spaces, (s->nspaces + 1) * sizeof(*ns));
	sp = calloc(1, sizeof(*sp));
	if (ns)
		s->spaces = ns;
	if (!ns || !sp) {
		free(sp);
		shared_sweep(d);
		return fld_reply_error(s, h->seq, ENOMEM, "out of memory");
	}
	sp->version = sh->opened_version;
	sp->nsegments = sh->nsegs;
	for (unsigned i = 0; i < sh->nsegs; i++) {
		struct fl_segment_info si = { .sz = sizeof(si) };
		fl_space_segment_info(sh->sp, i, &si);
		sp->segments[i] = (struct fl__mgr_segment){ .base = si.base, .length = si.length,
							    .mem = si.mem == FL_MEM_HUGETLB ? 2 : 1 };
	}
	while (sp->nroots < FL_MGR_MAX_ROOTS &&
	       !fl__space_root_at(sh->sp, sp->nroots, sp->roots[sp->nroots].name, &sp->roots[sp->nroots].value))
		sp->nroots++;
	n = fl__mgr_space_encode(out, sp);
	free(sp);
	if (n < 0) {
		shared_sweep(d);
		return fld_reply_error(s, h->seq, EINVAL, "space %s: cannot describe it", m.name);
	}
	s->spaces[slot] = (struct fld_session_space){ .sh = sh, .flags = m.flags };
	s->nspaces += slot == s->nspaces;
	sh->opens++;
	fld_log(0, "client %llu (pid %d uid %u): space %s %s at version %" PRIu64, (unsigned long long)s->id, s->pid,
		(unsigned)s->uid, m.name,
		m.flags & FL_MGR_SPACE_PRIVATE ? "private" : m.flags & FL_MGR_SPACE_RDONLY ? "read-only" : "read-write",
		sh->opened_version);
	return fl__mgr_send(s->sock, FL_MGR_SPACE, h->seq, out, (size_t)n, -1);
}

int fld_space_close(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p)
{
	char name[FL_MGR_MAX_SPACE_NAME + 1];
	struct fld_session_space *ss;

	if (s->kind != FLD_CLIENT || fl__mgr_space_name_decode(p, h->length, name) == -EBADMSG)
		return -EBADMSG;
	ss = fl__mgr_space_name_ok(name) ? session_space(s, name) : NULL;
	if (!ss)
		return fld_reply_error(s, h->seq, ENOENT, "space %s is not attached in this client", name);
	/* The sources stay until the session ends: the client unmapped the
	 * segments (the UNMAP events took its ranges out of the engine), and
	 * source ids are positions. */
	ss->closed = true;
	ss->sh->opens--;
	ss->sh = NULL;
	shared_sweep(d);
	return fl__mgr_send(s->sock, FL_MGR_SPACE_CLOSED, h->seq, NULL, 0, -1);
}

static void absorb_source(struct fld_source *src)
{
	for (unsigned i = 0; i < src->nregions; i++)
		fl__space_segment_absorb(src->shared->sp, src->seg, src->regions[i]);
}

int fld_space_commit(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p)
{
	char name[FL_MGR_MAX_SPACE_NAME + 1], why[FL_MGR_MAX_ERRMSG + 1];
	struct fld_session_space *ss;
	uint64_t version = 0;
	uint8_t out[8];
	int r;

	if (s->kind != FLD_CLIENT || fl__mgr_space_name_decode(p, h->length, name) == -EBADMSG)
		return -EBADMSG;
	ss = fl__mgr_space_name_ok(name) ? session_space(s, name) : NULL;
	if (!ss)
		return fld_reply_error(s, h->seq, ENOENT, "space %s is not attached in this client", name);
	/* Checked again: the directory's mode may have changed since. */
	r = check_access(d, s, name, MAY_WRITE, NULL, why, sizeof(why));
	if (r)
		return fld_reply_error(s, h->seq, -r, "%s", why);
	if (ss->sh->version)
		return fld_reply_error(s, h->seq, EROFS, "space %s: attached at version %" PRIu64 ", which is "
				       "read-only", name, ss->sh->version);
	/* The daemon's space is never attached: what the clients' regions
	 * brought into the page cache is known only to them. */
	for (struct fld_session *o = d->sessions; o; o = o->next)
		for (unsigned i = 0; i < o->nsources; i++)
			if (o->sources[i].shared == ss->sh)
				absorb_source(&o->sources[i]);
	d->space_msg[0] = 0;
	r = fl_space_commit(ss->sh->sp, NULL, &version);
	if (r)
		return fld_reply_error(s, h->seq, -r, "space %s: commit: %s", name,
				       d->space_msg[0] ? d->space_msg : strerror(-r));
	ss->sh->opened_version = version;
	fld_log(0, "client %llu (pid %d uid %u): space %s committed as version %" PRIu64, (unsigned long long)s->id,
		s->pid, (unsigned)s->uid, name, version);
	fl__mgr_u64_encode(out, version);
	return fl__mgr_send(s->sock, FL_MGR_COMMITTED, h->seq, out, 8, -1);
}

/*
 * A resuming client's page cache: this very segment's (the memfd's name,
 * which a client cannot forge: one it makes is its own uid's), of the
 * segment's memory type and size. Without the name, any page cache of
 * ours of the same length would do: another space's segment a client
 * attached, whose bytes this space's attachers would then see and its
 * commits save.
 */
static int check_resume_fd(int fd, const char *want_name, int mem, uint64_t length, struct stat *st)
{
	char path[64], link[256], want[256];
	struct statfs sfs;
	ssize_t n;

	if (fstat(fd, st) || fstatfs(fd, &sfs))
		return -errno;
	if ((sfs.f_type != TMPFS_MAGIC && sfs.f_type != HUGETLBFS_MAGIC) || !S_ISREG(st->st_mode) ||
	    st->st_uid != geteuid())
		return -EBADF;
	if ((unsigned long)sfs.f_type != (mem == FL_MEM_HUGETLB ? HUGETLBFS_MAGIC : TMPFS_MAGIC))
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = 0;
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", want_name);
	if (strcmp(link, want))
		return -EINVAL;
	if ((uint64_t)st->st_size != length)
		return -ESTALE;
	return 0;
}

static int resume_segment(struct fld_shared *sh, unsigned index, int fd, int mem, uint64_t length, char *why,
			  size_t whylen)
{
	struct stat st, cur;
	char nm[128];
	int rw = -1, r;

	segment_memfd_name(sh, index, nm, sizeof(nm));
	r = check_resume_fd(fd, nm, mem, length, &st);
	if (r) {
		if (r == -EINVAL)
			snprintf(why, whylen, "space %s segment %u: the page cache brought back is not this "
				 "segment's (memfd %s of its memory type)", sh->name, index, nm);
		else
			snprintf(why, whylen, "space %s segment %u: the page cache brought back is %s", sh->name,
				 index, r == -ESTALE ? "of another size" : "not one a faultlined made");
		return r;
	}
	if (fstat(fl__space_segment_fd(sh->sp, index), &cur))
		return -errno;
	if (cur.st_dev == st.st_dev && cur.st_ino == st.st_ino)
		return 0;	/* another client brought it back first */
	if (sh->users[index]) {
		snprintf(why, whylen, "space %s segment %u: attached here with another page cache already", sh->name,
			 index);
		return -ESTALE;
	}
	r = fld_reopen(fd, O_RDWR, &rw);
	if (!r)
		r = fl__space_segment_adopt(sh->sp, index, rw);
	fl__close(rw);
	if (!r)
		r = ro_fd(sh, index);
	if (r) {
		snprintf(why, whylen, "space %s segment %u: cannot take back its page cache: %s", sh->name, index,
			 strerror(-r));
		return r;
	}
	fld_log(0, "space %s segment %u: page cache resumed from a client", sh->name, index);
	return 0;
}

int fld_segment_open(struct fld *d, struct fld_session *s, const char *space, unsigned index, int resume_fd,
		     struct fld_source *src, char *why, size_t whylen)
{
	struct fl_segment_info si = { .sz = sizeof(si) };
	struct fld_session_space *ss;
	int r;

	(void)d;
	ss = fl__mgr_space_name_ok(space) ? session_space(s, space) : NULL;
	if (!ss) {
		snprintf(why, whylen, "space %s is not attached in this client", space);
		return -ENOENT;
	}
	if (index >= ss->sh->nsegs) {
		snprintf(why, whylen, "space %s has %u segments", space, ss->sh->nsegs);
		return -ERANGE;
	}
	fl_space_segment_info(ss->sh->sp, index, &si);
	if (resume_fd >= 0) {
		r = resume_segment(ss->sh, index, resume_fd, si.mem, si.length, why, whylen);
		if (r)
			return r;
	}
	ss->sh->users[index]++;
	*src = (struct fld_source){
		.kind = FL_MGR_SRC_SEGMENT, .shared = ss->sh, .seg = index, .length = si.length,
		.mem = si.mem == FL_MEM_HUGETLB ? 2 : 1, .page_size = si.mem == FL_MEM_HUGETLB ? 2u << 20 : 4096,
		/* The client maps read-only attachments MAP_PRIVATE too. */
		.private_map = ss->flags & (FL_MGR_SPACE_PRIVATE | FL_MGR_SPACE_RDONLY),
		.writable = !(ss->flags & (FL_MGR_SPACE_RDONLY | FL_MGR_SPACE_PRIVATE)),
	};
	return 0;
}

int fld_segment_fd(const struct fld_source *src, const struct fld_session *s)
{
	(void)s;
	return src->writable ? fl__space_segment_fd(src->shared->sp, src->seg) : src->shared->ro_fds[src->seg];
}

int fld_segment_region_new(const struct fld_source *src, struct fl_engine *e, const struct fl_region_opts *o,
			   struct fl_region **ret_region)
{
	return fl__space_segment_region_new(src->shared->sp, src->seg, e, o, ret_region);
}

int fld_segment_add_region(struct fld_source *src, struct fl_region *r)
{
	struct fl_region **nr = realloc(src->regions, (src->nregions + 1) * sizeof(*nr));

	if (!nr)
		return -ENOMEM;
	src->regions = nr;
	src->regions[src->nregions++] = r;
	return 0;
}

void fld_segments_absorb(struct fld_session *s)
{
	for (unsigned i = 0; i < s->nsources; i++) {
		struct fld_source *src = &s->sources[i];
		if (src->shared)
			absorb_source(src);
		free(src->regions);
		src->regions = NULL;
		src->nregions = 0;
	}
}

void fld_segment_put(struct fld_source *src)
{
	free(src->regions);
	src->regions = NULL;
	src->nregions = 0;
	if (src->shared && src->shared->users[src->seg])
		src->shared->users[src->seg]--;
	src->shared = NULL;
}

void fld_session_spaces_free(struct fld_session *s)
{
	for (unsigned i = 0; i < s->nspaces; i++)
		if (!s->spaces[i].closed)
			s->spaces[i].sh->opens--;
	/* The sources went first (their users counts with them). */
	if (s->d)
		shared_sweep(s->d);
	free(s->spaces);
	s->spaces = NULL;
	s->nspaces = 0;
}
