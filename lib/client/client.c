// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The client side of the manager protocol (client.h, mgr-proto.h): map lazy
 * memory, hand the uffd to faultlined, resume with a restarted daemon from
 * the guard thread, claim a forked child's uffd.
 */
#include "guard-internal.h"
#include "mgr-proto.h"

#include <faultline/client.h>
#include <faultline/uffd.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/faultlined/faultlined.sock"

struct cl_source {
	uint32_t id;			/* the daemon's (changes on resume) */
	uint32_t kind, region, mem, page_size;
	uint64_t length;
	int memfd;			/* templates, segments: our fd, kept for resume */
	bool dead;			/* a segment of a space detached: not resumed */
	char name[FL_MGR_MAX_NAME + 1];
};

/* A shared space attached through the daemon (fl_client_space_attach()). */
struct cl_space {
	char name[FL_MGR_MAX_SPACE_NAME + 1];
	unsigned flags;			/* FL_MGR_SPACE_* */
	uint64_t version;		/* asked for (0: live) */
	unsigned nsegs;
	unsigned first_source;		/* its segments' sources: [first, first + nsegs) */
	struct fl__mgr_space desc;	/* segments and roots, as the daemon said */
};

struct cl_range {
	uint64_t addr, len, offset;
	unsigned source;		/* index + 1 into sources; 0: zero memory */
	uint16_t mem, flags;
	bool registered;
};

struct fl_client {
	struct sockaddr_un addr;
	struct fl__logger log;
	unsigned flags, grace_ms, timeout_ms;
	pthread_mutex_t mu;		/* the socket and the tables: the guard resumes */
	int sock;
	uint32_t seq;
	uint64_t token;
	_Atomic pid_t daemon_pid;
	int uffd;
	uint64_t features;
	struct cl_source *sources;
	unsigned nsources;
	struct cl_range *ranges;
	unsigned nranges;
	struct cl_space **spaces;
	unsigned nspaces;
	void *beacon;
	struct fl_guard *guard;
	pid_t guard_pid;		/* the process whose thread the guard is */
	pid_t session_pid;		/* the process the session (and uffd) is for */
	uint8_t *buf;			/* one packet */
};

/* ---- requests -------------------------------------------------------------- */

/*
 * Send one request and wait for its reply of type `want`. ERROR replies
 * become their -errno. *ret_len: payload length (in c->buf after the
 * header); *ret_fd: an fd that came with the reply (or -1), when asked.
 */
static int request_on(struct fl_client *c, int sock, uint16_t type, const void *payload, size_t len, int fd,
		      uint16_t want, size_t *ret_len, int *ret_fd)
{
	struct fl__mgr_hdr h;
	uint32_t seq = ++c->seq;
	int rfd = -1, n;

	n = fl__mgr_send(sock, type, seq, payload, len, fd);
	if (n && n != -EPIPE && n != -ECONNRESET)
		return n;
	/* A daemon that refused us said why before it closed: read that. */
	n = fl__mgr_recv(sock, c->buf, &h, &rfd, n ? 100 : (int)c->timeout_ms);
	if (n < 0)
		return n;
	if (h.type == FL_MGR_ERROR) {
		char msg[FL_MGR_MAX_ERRMSG + 1];
		int err = EPROTO;
		fl__close(rfd);
		if (fl__mgr_error_decode(c->buf + FL_MGR_HDR_SIZE, (size_t)n, &err, msg))
			err = EPROTO;
		else
			fl__log(&c->log, FL_LOG_ERROR, "faultlined: %s", msg);
		return -err;
	}
	if (h.type != want || h.seq != seq) {
		fl__close(rfd);
		return -EPROTO;
	}
	if (ret_len)
		*ret_len = (size_t)n;
	if (ret_fd)
		*ret_fd = rfd;
	else
		fl__close(rfd);
	return 0;
}

static int request(struct fl_client *c, uint16_t type, const void *payload, size_t len, int fd, uint16_t want,
		   size_t *ret_len, int *ret_fd)
{
	return request_on(c, c->sock, type, payload, len, fd, want, ret_len, ret_fd);
}

/* A new connection and HELLO; *ret_sock and the WELCOME on success. */
static int open_session(struct fl_client *c, uint32_t role, uint64_t token, int *ret_sock,
			struct fl__mgr_welcome *ret_welcome)
{
	struct fl__mgr_hello hello = { .role = role, .token = token };
	uint8_t p[32];
	size_t n;
	int s, r;

	r = fl__unix_connect(c->addr.sun_path, SOCK_SEQPACKET, &s);
	if (r)
		return r;
	fl__mgr_hello_encode(p, &hello);
	r = request_on(c, s, FL_MGR_HELLO, p, 16, -1, FL_MGR_WELCOME, &n, NULL);
	if (!r)
		r = fl__mgr_welcome_decode(c->buf + FL_MGR_HDR_SIZE, n, ret_welcome);
	if (r) {
		/* A policy refusal comes as an ERROR reply (-EPERM); a
		 * connection closed with no answer is a daemon that died or
		 * exited meanwhile (-ECONNRESET): worth another try, unlike a
		 * refusal. */
		close(s);
		return r;
	}
	*ret_sock = s;
	return 0;
}

static int client_alloc(const struct fl_client_opts *opts, struct fl_client **ret)
{
	struct fl_client_opts o;
	struct fl_client *c;
	const char *path;
	int r;

	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if (o.flags & ~FL_CLIENT_NO_GUARD)
		return -EINVAL;
	path = o.socket ? o.socket : getenv("FAULTLINED_SOCKET");
	if (!path || !*path)
		path = DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(c->addr.sun_path))
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->buf = malloc(FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD);
	if (!c->buf) {
		free(c);
		return -ENOMEM;
	}
	c->addr.sun_family = AF_UNIX;
	memcpy(c->addr.sun_path, path, strlen(path) + 1);
	c->log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = FL_LOG_ERROR };
	c->flags = o.flags;
	c->grace_ms = o.grace_ms ? o.grace_ms : 5000;
	c->timeout_ms = o.timeout_ms ? o.timeout_ms : 10000;
	c->sock = -1;
	c->uffd = -1;
	pthread_mutex_init(&c->mu, NULL);
	*ret = c;
	return 0;
}

int fl_client_connect(const struct fl_client_opts *opts, struct fl_client **ret_client)
{
	struct fl__mgr_welcome w;
	struct fl_client *c;
	int r;

	if (!ret_client)
		return -EINVAL;
	r = client_alloc(opts, &c);
	if (r)
		return r;
	r = open_session(c, FL_MGR_ROLE_CLIENT, 0, &c->sock, &w);
	if (r) {
		fl_client_free(c);
		return r;
	}
	c->token = w.token;
	c->session_pid = getpid();
	atomic_store(&c->daemon_pid, (pid_t)w.pid);
	*ret_client = c;
	return 0;
}

/* ---- sources and ranges ---------------------------------------------------- */

/* OPEN a source (or RESUME it with our memfd); fills id, length, ... */
static int open_source(struct fl_client *c, int sock, struct cl_source *s, bool resume)
{
	struct fl__mgr_open o = { .kind = s->kind, .region = s->region };
	struct fl__mgr_source src;
	uint8_t p[12 + FL_MGR_MAX_NAME];
	size_t n;
	int len, fd = -1, r;

	memcpy(o.name, s->name, sizeof(o.name));
	if (resume && s->kind != FL_MGR_SRC_IMAGE)
		o.flags = FL_MGR_OPEN_RESUME;
	len = fl__mgr_open_encode(p, &o);
	if (len < 0)
		return len;
	r = request_on(c, sock, FL_MGR_OPEN, p, (size_t)len, o.flags ? s->memfd : -1, FL_MGR_SOURCE, &n, &fd);
	if (!r)
		r = fl__mgr_source_decode(c->buf + FL_MGR_HDR_SIZE, n, &src);
	if (!r && s->kind != FL_MGR_SRC_IMAGE && !resume && fd < 0)
		r = -EPROTO;	/* a template or segment comes with its page cache */
	if (!r && resume && (src.length != s->length || src.page_size != s->page_size))
		r = -ESTALE;	/* the image changed under the session */
	if (r) {
		fl__close(fd);
		return r;
	}
	s->id = src.id;
	s->length = src.length;
	s->page_size = src.page_size;
	s->mem = src.mem;
	if (!resume)
		s->memfd = fd;
	else
		fl__close(fd);
	return 0;
}

static int find_or_open_source(struct fl_client *c, uint32_t kind, const char *name, unsigned region,
			       unsigned *ret_index)
{
	struct cl_source s = { .kind = kind, .region = region, .memfd = -1 }, *ns;
	int r;

	for (unsigned i = 0; i < c->nsources; i++) {
		if (c->sources[i].kind == kind && c->sources[i].region == region &&
		    !strcmp(c->sources[i].name, name)) {
			*ret_index = i;
			return 0;
		}
	}
	if (strlen(name) > FL_MGR_MAX_NAME || !fl__mgr_name_ok(name))
		return -EACCES;
	snprintf(s.name, sizeof(s.name), "%s", name);
	r = open_source(c, c->sock, &s, false);
	if (r)
		return r;
	ns = realloc(c->sources, (c->nsources + 1) * sizeof(*ns));
	if (!ns) {
		fl__close(s.memfd);
		return -ENOMEM;
	}
	c->sources = ns;
	c->sources[c->nsources] = s;
	*ret_index = c->nsources++;
	return 0;
}

static void range_wire(const struct fl_client *c, const struct cl_range *r, struct fl__mgr_range *w)
{
	*w = (struct fl__mgr_range){
		.addr = r->addr, .len = r->len, .offset = r->offset, .mem = r->mem, .flags = r->flags,
		.source = r->source ? c->sources[r->source - 1].id : 0,
	};
}

/* ATTACH ranges [first, first + n) (with the uffd when fd >= 0). */
static int send_attach(struct fl_client *c, int sock, unsigned first, unsigned n, int fd)
{
	struct fl__mgr_range *w = calloc(n ? n : 1, sizeof(*w));
	struct fl__mgr_attach a = { .features = c->features, .nranges = n, .ranges = w };
	uint8_t *p = malloc(16 + (size_t)n * FL_MGR_RANGE_SIZE);
	int len, r = -ENOMEM;

	if (w && p) {
		for (unsigned i = 0; i < n; i++)
			range_wire(c, &c->ranges[first + i], &w[i]);
		len = fl__mgr_attach_encode(p, 16 + (size_t)n * FL_MGR_RANGE_SIZE, &a);
		r = len < 0 ? len : request_on(c, sock, FL_MGR_ATTACH, p, (size_t)len, fd, FL_MGR_ATTACHED, NULL, NULL);
	}
	free(w);
	free(p);
	return r;
}

static int register_range(struct fl_client *c, struct cl_range *r)
{
	unsigned modes = FL_REG_MISSING;
	int ret;

	if (r->source && c->sources[r->source - 1].kind != FL_MGR_SRC_IMAGE)
		modes |= FL_REG_MINOR;	/* MISSING too: a page not in the page cache must come from us */
	ret = fl_uffd_register(c->uffd, (void *)(uintptr_t)r->addr, r->len, modes, NULL);
	if (ret == -EINVAL && (modes & FL_REG_MINOR))
		ret = -EOPNOTSUPP;
	if (!ret)
		r->registered = true;
	return ret;
}

static int guard_ranges(struct fl_client *c)
{
	struct fl_range *v;
	int r;

	if (!c->guard)
		return 0;
	v = calloc(c->nranges ? c->nranges : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nranges; i++)
		v[i] = (struct fl_range){ c->ranges[i].addr, c->ranges[i].len };
	r = fl__guard_set_ranges(c->guard, v, c->nranges);
	free(v);
	return r;
}

static int add_range(struct fl_client *c, const struct cl_range *r)
{
	struct cl_range *nr = realloc(c->ranges, (c->nranges + 1) * sizeof(*nr));

	if (!nr)
		return -ENOMEM;
	c->ranges = nr;
	c->ranges[c->nranges++] = *r;
	return 0;
}

int fl_client_map(struct fl_client *c, const struct fl_client_map_opts *opts, void **ret_addr)
{
	struct fl_client_map_opts o;
	struct cl_range r = { 0 };
	unsigned idx = 0;
	int flags = MAP_PRIVATE, fd = -1, ret;
	size_t psz = FL_PAGE_SIZE;
	void *p;

	if (!c || !opts || !ret_addr)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (o.source > FL_SOURCE_TEMPLATE || (o.source == FL_SOURCE_ZERO && !o.length) ||
	    (o.source != FL_SOURCE_ZERO && !o.image))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	if (o.source != FL_SOURCE_ZERO) {
		const struct cl_source *s;
		ret = find_or_open_source(c, o.source == FL_SOURCE_IMAGE ? FL_MGR_SRC_IMAGE : FL_MGR_SRC_TEMPLATE,
					  o.image, o.region, &idx);
		if (ret)
			goto out;
		s = &c->sources[idx];
		psz = s->page_size;
		ret = -ERANGE;
		if (o.offset % psz || o.offset >= s->length)
			goto out;
		if (!o.length)
			o.length = s->length - o.offset;
		if (o.length > s->length - o.offset)
			goto out;
		/* A clone maps its template from the first byte (the daemon
		 * fills it through an alias that starts there too). */
		ret = -EINVAL;
		if (s->kind == FL_MGR_SRC_TEMPLATE && o.offset)
			goto out;
		r.source = idx + 1;
		r.mem = (uint16_t)(s->kind == FL_MGR_SRC_TEMPLATE ? s->mem : 0);
		if (s->kind == FL_MGR_SRC_TEMPLATE)
			fd = s->memfd;
	}
	o.length = (o.length + psz - 1) / psz * psz;
	if (fd < 0)
		flags |= MAP_ANONYMOUS | MAP_NORESERVE;
	if (o.addr)
		flags |= MAP_FIXED_NOREPLACE;
	ret = fl__mmap(o.addr, o.length, PROT_READ | PROT_WRITE, flags, fd, fd >= 0 ? (off_t)o.offset : 0, &p);
	if (ret)
		goto out;
	if (o.addr && p != o.addr) {
		fl__munmap(p, o.length);
		ret = -EEXIST;
		goto out;
	}
	if (fd < 0)
		/* Page granularity: a THP would be filled (and copied on
		 * fork) 2 MiB at a time, and no uffd fill makes huge pages. */
		fl__madvise(p, o.length, MADV_NOHUGEPAGE);
	r.addr = (uintptr_t)p;
	r.len = o.length;
	r.offset = o.offset;
	ret = add_range(c, &r);
	if (!ret && c->uffd >= 0) {
		struct cl_range *nr = &c->ranges[c->nranges - 1];
		ret = register_range(c, nr);
		if (!ret)
			ret = send_attach(c, c->sock, c->nranges - 1, 1, -1);
		if (!ret && !(c->features & UFFD_FEATURE_EVENT_FORK))
			fl__madvise(p, o.length, MADV_DONTFORK);	/* see fl_client_attach() */
		if (!ret)
			ret = guard_ranges(c);
		if (ret) {
			if (nr->registered)
				fl_uffd_unregister(c->uffd, p, o.length);
			c->nranges--;
		}
	}
	if (ret) {
		fl__munmap(p, o.length);
		goto out;
	}
	*ret_addr = p;
out:
	pthread_mutex_unlock(&c->mu);
	return ret;
}

/* ---- attach, resume -------------------------------------------------------------- */

/* SPACE_OPEN: the space's description into sp->desc. */
static int space_open_on(struct fl_client *c, int sock, struct cl_space *sp)
{
	struct fl__mgr_space_open m = { .version = sp->version, .flags = sp->flags };
	uint8_t p[16 + FL_MGR_MAX_SPACE_NAME];
	size_t n;
	int len, r;

	memcpy(m.name, sp->name, sizeof(m.name));
	len = fl__mgr_space_open_encode(p, &m);
	if (len < 0)
		return len;
	r = request_on(c, sock, FL_MGR_SPACE_OPEN, p, (size_t)len, -1, FL_MGR_SPACE, &n, NULL);
	if (!r)
		r = fl__mgr_space_decode(c->buf + FL_MGR_HDR_SIZE, n, &sp->desc);
	return r;
}

/*
 * Open every source again on a new session (a restarted daemon, or a
 * forked child's new session): the attached spaces first, whose segments
 * are sources; templates and segments bring their page caches back.
 */
static int reopen_sources(struct fl_client *c, int sock)
{
	int r = 0;

	for (unsigned i = 0; !r && i < c->nspaces; i++) {
		struct cl_space *sp = c->spaces[i];
		struct fl__mgr_space was = sp->desc;

		r = space_open_on(c, sock, sp);
		/* The segments are mapped where they were: a space whose
		 * segments moved since cannot be resumed. */
		if (!r && was.nsegments != sp->desc.nsegments)
			r = -ESTALE;
		for (unsigned k = 0; !r && k < was.nsegments; k++)
			if (was.segments[k].base != sp->desc.segments[k].base ||
			    was.segments[k].length != sp->desc.segments[k].length ||
			    was.segments[k].mem != sp->desc.segments[k].mem)
				r = -ESTALE;
		if (r)
			sp->desc = was;
	}
	for (unsigned i = 0; !r && i < c->nsources; i++)
		if (!c->sources[i].dead)
			r = open_source(c, sock, &c->sources[i], true);
	return r;
}

/* The guard's reconnect callback: resume the session with a new daemon. */
static pid_t resume(void *arg)
{
	struct fl_client *c = arg;
	struct fl__mgr_welcome w;
	int s = -1, r, ufd = -1;

	pthread_mutex_lock(&c->mu);
	r = open_session(c, FL_MGR_ROLE_CLIENT, c->token, &s, &w);
	if (!r)
		r = reopen_sources(c, s);
	if (!r)
		r = fl__dup_cloexec(c->uffd, &ufd);
	if (!r)
		r = send_attach(c, s, 0, c->nranges, ufd);
	fl__close(ufd);
	if (r) {
		fl__close(s);
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	fl__close(c->sock);
	c->sock = s;
	atomic_store(&c->daemon_pid, (pid_t)w.pid);
	pthread_mutex_unlock(&c->mu);
	return (pid_t)w.pid;
}

static int start_guard(struct fl_client *c)
{
	struct fl_guard_opts go = {
		.sz = sizeof(go), .uffd = c->uffd, .features = c->features, .timeout_ms = c->grace_ms,
		.reconnect = resume, .reconnect_ctx = c,
	};
	int r;

	if (c->flags & FL_CLIENT_NO_GUARD)
		return 0;
	r = fl_guard_new(&go, &c->guard);
	if (!r)
		c->guard_pid = getpid();
	if (!r)
		r = guard_ranges(c);
	if (!r)
		r = fl_guard_watch(c->guard, atomic_load(&c->daemon_pid));
	return r;
}

/* The beacon: one page of zero memory, registered but never touched here. */
static int add_beacon(struct fl_client *c)
{
	struct cl_range r = { .len = FL_PAGE_SIZE, .flags = FL_MGR_RANGE_BEACON };
	void *p;
	int ret;

	ret = fl__mmap(NULL, FL_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p);
	if (ret)
		return ret;
	r.addr = (uintptr_t)p;
	ret = add_range(c, &r);
	if (ret) {
		fl__munmap(p, FL_PAGE_SIZE);
		return ret;
	}
	c->beacon = p;
	return 0;
}

static int create_uffd(struct fl_client *c)
{
	uint64_t want = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_SHMEM |
			UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_SHMEM |
			UFFD_FEATURE_MINOR_HUGETLBFS | UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
	int r;

	want &= fl_features_to_uffd(fl_features());
	r = fl_uffd_create(FL_UFFD_CLOEXEC, &c->uffd);
	if (r)
		return r;
	r = fl_uffd_api(c->uffd, want, NULL, NULL);
	if (r == -EPERM && (want & UFFD_FEATURE_EVENT_FORK)) {
		/* EVENT_FORK needs CAP_SYS_PTRACE; UFFDIO_API may be tried
		 * again after a refusal. Forked children then see their lazy
		 * memory unregistered: say so through the result. */
		want &= ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
		r = fl_uffd_api(c->uffd, want, NULL, NULL);
	}
	if (r) {
		fl__close(c->uffd);
		c->uffd = -1;
		return r;
	}
	c->features = want;
	return 0;
}

int fl_client_attach(struct fl_client *c)
{
	int r;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	r = c->uffd >= 0 ? -EALREADY : 0;
	if (!r && !c->beacon)
		r = add_beacon(c);
	if (!r)
		r = create_uffd(c);
	for (unsigned i = 0; !r && i < c->nranges; i++)
		r = register_range(c, &c->ranges[i]);
	if (!r)
		r = send_attach(c, c->sock, 0, c->nranges, c->uffd);
	if (!r && !(c->features & UFFD_FEATURE_EVENT_FORK))
		/* Without EVENT_FORK nobody serves a child's copy: the kernel
		 * would fill it with zeros. A child gets no copy at all (an
		 * access there is SIGSEGV), never zeros. */
		for (unsigned i = 0; i < c->nranges; i++)
			fl__madvise((void *)(uintptr_t)c->ranges[i].addr, c->ranges[i].len, MADV_DONTFORK);
	if (r && c->uffd >= 0 && r != -EALREADY) {
		/* Nobody serves these ranges. Unregistered, an image's pages
		 * would read zeros: make them inaccessible instead (SIGSEGV),
		 * in case the caller uses them despite the error. */
		for (unsigned i = 0; i < c->nranges; i++) {
			void *p = (void *)(uintptr_t)c->ranges[i].addr;
			if (c->ranges[i].source)
				mprotect(p, c->ranges[i].len, PROT_NONE);
			if (c->ranges[i].registered)
				fl_uffd_unregister(c->uffd, p, c->ranges[i].len);
		}
		for (unsigned i = 0; i < c->nranges; i++)
			c->ranges[i].registered = false;
		fl__close(c->uffd);
		c->uffd = -1;
	}
	pthread_mutex_unlock(&c->mu);
	if (!r)
		r = start_guard(c);
	return r;
}

/*
 * open_session() again every 50 ms until `deadline` while no daemon answers
 * (none listening yet, or one that died during the handshake): the child
 * of a fork the daemon died in waits for the restarted one, as the guard
 * does for an attached client.
 */
static int open_session_wait(struct fl_client *c, uint64_t deadline, int *ret_sock,
			     struct fl__mgr_welcome *ret_welcome)
{
	for (;;) {
		int r = open_session(c, FL_MGR_ROLE_CLIENT, 0, ret_sock, ret_welcome);

		if ((r != -ECONNREFUSED && r != -ENOENT && r != -ECONNRESET && r != -EPIPE) ||
		    fl__now_ns() >= deadline)
			return r;
		usleep(50000);
	}
}

/* Wait until process `pid` (the daemon we knew) has exited, or `deadline`. */
static void wait_exit(pid_t pid, uint64_t deadline)
{
	struct pollfd p = { .events = POLLIN };
	uint64_t now = fl__now_ns();

	if (pid <= 0 || now >= deadline || fl__pidfd_open(pid, &p.fd))
		return;		/* ESRCH: gone already */
	fl__poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
	fl__close(p.fd);
}

/*
 * Register every range on `ufd`: 0, or -EBUSY while another userfaultfd
 * still holds them (the child's own, still in a live daemon).
 */
static int register_all(struct fl_client *c)
{
	int r = 0;

	for (unsigned i = 0; i < c->nranges; i++)
		c->ranges[i].registered = false;
	for (unsigned i = 0; !r && i < c->nranges; i++)
		r = register_range(c, &c->ranges[i]);
	if (r)
		for (unsigned i = 0; i < c->nranges; i++)
			if (c->ranges[i].registered) {
				fl_uffd_unregister(c->uffd, (void *)(uintptr_t)c->ranges[i].addr,
						   c->ranges[i].len);
				c->ranges[i].registered = false;
			}
	return r;
}

/*
 * The claim failed: the daemon died during the hand-off (before it wrote
 * the token, with the fork unclaimed, or in the middle of the claim), or it
 * refused. Only the daemon held the child's userfaultfd; once that is gone
 * the kernel has unregistered the child's memory, whose missing pages would
 * read zeros. Take the memory over as a new client of the restarted daemon:
 * a new userfaultfd registered over the same ranges (the pages the child
 * has are its copies; the missing ones fault again), a new session, the
 * sources opened again (templates resumed with our memfd), one ATTACH.
 * Registering is the test of whether the old userfaultfd is gone: -EBUSY
 * while a daemon still holds it, so we first wait (up to the grace period)
 * for the daemon we knew to exit.
 */
static int adopt_anew(struct fl_client *c, uint64_t deadline)
{
	struct fl__mgr_welcome w;
	int inherited = c->uffd, s = -1, r;

	c->uffd = -1;
	r = create_uffd(c);
	if (r) {
		c->uffd = inherited;
		return r;
	}
	r = register_all(c);
	if (r == -EBUSY) {
		wait_exit(atomic_load(&c->daemon_pid), deadline);
		r = register_all(c);
	}
	if (!r)
		r = open_session_wait(c, deadline, &s, &w);
	if (!r)
		r = reopen_sources(c, s);
	if (!r)
		r = send_attach(c, s, 0, c->nranges, c->uffd);
	if (r) {
		register_all(c);	/* nothing registered on it any more */
		fl__close(s);
		fl__close(c->uffd);
		c->uffd = inherited;
		return r;
	}
	fl__close(inherited);	/* the parent's uffd */
	fl__close(c->sock);
	c->sock = s;
	c->token = w.token;
	atomic_store(&c->daemon_pid, (pid_t)w.pid);
	return 0;
}

/*
 * Nobody serves the child's memory: make the ranges with a source
 * inaccessible (an access is SIGSEGV) rather than let their missing pages
 * read zeros, as fl_client_attach() does on failure. Zero memory stays:
 * zeros are its contents.
 */
static void fail_closed_child(struct fl_client *c)
{
	for (unsigned i = 0; i < c->nranges; i++) {
		if (c->ranges[i].source)
			mprotect((void *)(uintptr_t)c->ranges[i].addr, c->ranges[i].len, PROT_NONE);
		c->ranges[i].registered = false;
	}
	fl__close(c->uffd);	/* the parent's: nothing of ours is registered on it */
	c->uffd = -1;
	fl__close(c->sock);
	c->sock = -1;
	c->session_pid = getpid();
}

/* CLAIM the child's uffd with `token`: 0 and the session, or -errno. */
static int claim(struct fl_client *c, uint64_t token, uint64_t deadline)
{
	struct fl__mgr_welcome w;
	uint64_t reply;
	uint8_t p[8];
	size_t n;
	int s = -1, ufd = -1, r;

	r = open_session_wait(c, deadline, &s, &w);
	if (r)
		return r;
	fl__mgr_u64_encode(p, token);
	r = request_on(c, s, FL_MGR_CLAIM, p, 8, -1, FL_MGR_CLAIMED, &n, &ufd);
	if (!r)
		r = fl__mgr_u64_decode(c->buf + FL_MGR_HDR_SIZE, n, &reply);
	if (!r && ufd < 0)
		r = -EPROTO;
	if (r) {
		fl__close(ufd);
		fl__close(s);
		return r;
	}
	fl__close(c->sock);
	fl__close(c->uffd);	/* the parent's uffd, inherited */
	c->sock = s;
	c->uffd = ufd;
	c->token = reply;
	atomic_store(&c->daemon_pid, (pid_t)w.pid);
	return 0;
}

int fl_client_after_fork(struct fl_client *c)
{
	volatile uint64_t *b;
	uint64_t token = 0, deadline;
	int r;

	if (!c || !c->beacon || c->uffd < 0)
		return -EINVAL;
	if (c->session_pid == getpid())
		return -EALREADY;	/* claimed already, or not a child at all */
	if (!(c->features & UFFD_FEATURE_EVENT_FORK))
		return -ENOENT;		/* the daemon saw no fork (and the beacon is not here) */
	/* The guard thread did not survive fork: forget it without a join,
	 * and start afresh on the mutex, which it may have held. */
	if (c->guard)
		fl__guard_forget(c->guard);
	c->guard = NULL;
	pthread_mutex_init(&c->mu, NULL);
	deadline = fl__now_ns() + (uint64_t)c->grace_ms * 1000000ull;
	/* The daemon wrote the token into the child's beacon before serving
	 * any fault of the child (a fault here waits for it). No token: the
	 * daemon died before writing it (the page then reads zeros). */
	b = c->beacon;
	if (b[0] == FL_MGR_BEACON_MAGIC)
		token = b[1];
	/* Gone again, so that our own children start with no beacon page. */
	fl__madvise(c->beacon, FL_PAGE_SIZE, MADV_DONTNEED);
	r = token ? claim(c, token, deadline) : -ENOENT;
	if (r && r != -ENOMEM && r != -EMFILE && adopt_anew(c, deadline) == 0)
		r = 0;
	if (r) {
		fail_closed_child(c);
		return r;
	}
	c->session_pid = getpid();
	return start_guard(c);
}

int fl_client_uffd(const struct fl_client *c)
{
	return c ? c->uffd : -1;
}

pid_t fl_client_daemon_pid(const struct fl_client *c)
{
	return c ? atomic_load(&((struct fl_client *)c)->daemon_pid) : 0;
}

enum fl_guard_state fl_client_guard_state(const struct fl_client *c)
{
	return c && c->guard ? fl_guard_state(c->guard) : FL_GUARD_IDLE;
}

int fl_client_detach(struct fl_client *c)
{
	int r;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	r = c->uffd < 0 ? -ENOTCONN : request(c, FL_MGR_DETACH, NULL, 0, -1, FL_MGR_DETACHED, NULL, NULL);
	pthread_mutex_unlock(&c->mu);
	if (!r) {
		/* The daemon let go of the uffd on purpose: stop watching it.
		 * (On failure the guard stays: its rules still apply.) */
		if (c->guard && c->guard_pid != getpid())
			fl__guard_forget(c->guard);
		else
			fl_guard_free(c->guard);
		c->guard = NULL;
		/* Everything was delivered: the memory is ordinary memory now. */
		for (unsigned i = 0; i < c->nranges; i++)
			if (c->ranges[i].registered)
				fl_uffd_unregister(c->uffd, (void *)(uintptr_t)c->ranges[i].addr,
						   c->ranges[i].len);
		fl__close(c->uffd);
		c->uffd = -1;
	}
	return r;
}

struct fl_client *fl_client_free(struct fl_client *c)
{
	if (!c)
		return NULL;
	if (c->guard && c->guard_pid != getpid())
		fl__guard_forget(c->guard);
	else
		fl_guard_free(c->guard);
	fl__close(c->sock);
	fl__close(c->uffd);
	for (unsigned i = 0; i < c->nsources; i++)
		fl__close(c->sources[i].memfd);
	if (c->beacon)
		fl__munmap(c->beacon, FL_PAGE_SIZE);
	free(c->sources);
	free(c->ranges);
	for (unsigned i = 0; i < c->nspaces; i++)
		free(c->spaces[i]);
	free(c->spaces);
	free(c->buf);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return NULL;
}

/* ---- shared spaces ---------------------------------------------------------- */

static struct cl_space *find_space(const struct fl_client *c, const char *name, unsigned *ret_index)
{
	for (unsigned i = 0; i < c->nspaces; i++) {
		if (!strcmp(c->spaces[i]->name, name)) {
			if (ret_index)
				*ret_index = i;
			return c->spaces[i];
		}
	}
	return NULL;
}

/* Sources of a space no longer attached: never resumed, fd closed. */
static void sources_dead(struct fl_client *c, unsigned first, unsigned n)
{
	for (unsigned i = first; i < first + n && i < c->nsources; i++) {
		c->sources[i].dead = true;
		fl__close(c->sources[i].memfd);
		c->sources[i].memfd = -1;
	}
}

static void space_close_request(struct fl_client *c, const char *name)
{
	uint8_t p[FL_MGR_MAX_SPACE_NAME];
	int len = fl__mgr_space_name_encode(p, name);

	/* The daemon only forgets the name (its sources end with the
	 * session): a daemon gone meanwhile forgets it anyway. */
	if (len > 0 && c->sock >= 0)
		request(c, FL_MGR_SPACE_CLOSE, p, (size_t)len, -1, FL_MGR_SPACE_CLOSED, NULL, NULL);
}

/* Open the space's segments as sources (appended to c->sources). */
static int open_segments(struct fl_client *c, struct cl_space *sp)
{
	sp->first_source = c->nsources;
	for (unsigned i = 0; i < sp->nsegs; i++) {
		const struct fl__mgr_segment *seg = &sp->desc.segments[i];
		struct cl_source src = { .kind = FL_MGR_SRC_SEGMENT, .region = i, .memfd = -1 }, *ns;
		int r;

		snprintf(src.name, sizeof(src.name), "%s", sp->name);
		r = open_source(c, c->sock, &src, false);
		if (!r && (src.length != seg->length || src.mem != seg->mem || seg->length % src.page_size))
			r = -EPROTO;
		ns = r ? NULL : realloc(c->sources, (c->nsources + 1) * sizeof(*ns));
		if (!r && !ns)
			r = -ENOMEM;
		if (r) {
			fl__close(src.memfd);
			return r;
		}
		c->sources = ns;
		c->sources[c->nsources++] = src;
	}
	return 0;
}

/* Map the segments at their bases and record them as ranges. */
static int map_segments(struct fl_client *c, const struct cl_space *sp)
{
	int prot = (sp->flags & FL_MGR_SPACE_RDONLY) ? PROT_READ : PROT_READ | PROT_WRITE;
	/* Read-only is MAP_PRIVATE too: the kernel registers no userfaultfd
	 * on a mapping that may never be written (no VM_MAYWRITE, as a shared
	 * mapping of our read-only fd is), and a private mapping of it reads
	 * the page cache, other processes' writes included, while nothing
	 * here can reach the page cache (the fd is read-only). */
	int flags = ((sp->flags & (FL_MGR_SPACE_PRIVATE | FL_MGR_SPACE_RDONLY)) ? MAP_PRIVATE : MAP_SHARED) |
		    MAP_FIXED_NOREPLACE;

	for (unsigned i = 0; i < sp->nsegs; i++) {
		const struct fl__mgr_segment *seg = &sp->desc.segments[i];
		const struct cl_source *src = &c->sources[sp->first_source + i];
		struct cl_range r = { .addr = seg->base, .len = seg->length, .source = sp->first_source + i + 1,
				      .mem = (uint16_t)seg->mem };
		void *want = (void *)(uintptr_t)seg->base, *p;
		int ret;

		ret = fl__mmap(want, seg->length, prot, flags, src->memfd, 0, &p);
		if (!ret && p != want) {
			/* A kernel older than MAP_FIXED_NOREPLACE took it as a hint. */
			fl__munmap(p, seg->length);
			ret = -EEXIST;
		}
		if (!ret) {
			ret = add_range(c, &r);
			if (ret)
				fl__munmap(p, seg->length);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* Have an attached client's daemon serve ranges [first, nranges). */
static int serve_new_ranges(struct fl_client *c, unsigned first, bool *ret_sent)
{
	int r = 0;

	for (unsigned i = first; !r && i < c->nranges; i++)
		r = register_range(c, &c->ranges[i]);
	if (!r)
		r = send_attach(c, c->sock, first, c->nranges - first, -1);
	if (r)
		return r;
	*ret_sent = true;
	/* See fl_client_attach(): without EVENT_FORK a child's copy of a
	 * shared mapping would fill the page cache with zeros for everyone. */
	if (!(c->features & UFFD_FEATURE_EVENT_FORK))
		for (unsigned i = first; i < c->nranges; i++)
			fl__madvise((void *)(uintptr_t)c->ranges[i].addr, c->ranges[i].len, MADV_DONTFORK);
	return guard_ranges(c);
}

/*
 * Take ranges [first, nranges) away. Registered ranges the daemon serves
 * are unmapped registered: the UNMAP event takes them out of its engine.
 * Others are unregistered first (nobody would read their event).
 */
static void drop_ranges(struct fl_client *c, unsigned first, bool served)
{
	for (unsigned i = first; i < c->nranges; i++) {
		void *p = (void *)(uintptr_t)c->ranges[i].addr;
		if (c->ranges[i].registered && !served)
			fl_uffd_unregister(c->uffd, p, c->ranges[i].len);
		fl__munmap(p, c->ranges[i].len);
	}
	c->nranges = first;
}

int fl_client_space_attach(struct fl_client *c, const char *name, const struct fl_client_space_opts *opts)
{
	struct fl_client_space_opts o;
	struct cl_space *sp = NULL, **nsp;
	unsigned first_range;
	bool opened = false, sent = false;
	int r;

	if (!c || !name)
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if ((o.flags & ~(FL_CLIENT_SPACE_RDONLY | FL_CLIENT_SPACE_PRIVATE)) || !fl__mgr_space_name_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	first_range = c->nranges;
	/* Attached first: a segment touched before it is registered would
	 * put a zero page into the page cache every process shares. */
	r = c->uffd < 0 ? -ENOTCONN : find_space(c, name, NULL) ? -EALREADY : 0;
	if (r)
		goto out;
	sp = calloc(1, sizeof(*sp));
	nsp = realloc(c->spaces, (c->nspaces + 1) * sizeof(*nsp));
	if (nsp)
		c->spaces = nsp;
	if (!sp || !nsp) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(sp->name, sizeof(sp->name), "%s", name);
	sp->flags = ((o.flags & FL_CLIENT_SPACE_RDONLY) ? FL_MGR_SPACE_RDONLY : 0) |
		    ((o.flags & FL_CLIENT_SPACE_PRIVATE) ? FL_MGR_SPACE_PRIVATE : 0);
	sp->version = o.version;
	sp->first_source = c->nsources;
	r = space_open_on(c, c->sock, sp);
	if (r)
		goto out;
	opened = true;
	sp->nsegs = sp->desc.nsegments;
	r = open_segments(c, sp);
	if (!r)
		r = map_segments(c, sp);
	if (!r)
		r = serve_new_ranges(c, first_range, &sent);
	if (!r) {
		c->spaces[c->nspaces++] = sp;
		sp = NULL;
	}
out:
	if (r) {
		drop_ranges(c, first_range, sent);
		if (sent)
			guard_ranges(c);
		if (opened) {
			sources_dead(c, sp->first_source, c->nsources - sp->first_source);
			space_close_request(c, name);
		}
	}
	free(sp);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int fl_client_space_detach(struct fl_client *c, const char *name)
{
	struct cl_space *sp;
	unsigned idx, kept = 0;
	bool failed;

	if (!c || !name)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	sp = find_space(c, name, &idx);
	if (!sp) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	/* A guard that failed closed means no daemon will ever read an
	 * UNMAP event, which munmap would wait for. */
	failed = c->guard && fl_guard_state(c->guard) == FL_GUARD_FAILED;
	for (unsigned i = 0; i < c->nranges; i++) {
		struct cl_range *r = &c->ranges[i];
		if (r->source > sp->first_source && r->source <= sp->first_source + sp->nsegs) {
			/* Registered, the daemon reads the UNMAP event and
			 * forgets the range (munmap waits for that: during a
			 * restart, for the next daemon). */
			if (failed && r->registered)
				fl_uffd_unregister(c->uffd, (void *)(uintptr_t)r->addr, r->len);
			fl__munmap((void *)(uintptr_t)r->addr, r->len);
			continue;
		}
		c->ranges[kept++] = *r;
	}
	c->nranges = kept;
	guard_ranges(c);
	sources_dead(c, sp->first_source, sp->nsegs);
	space_close_request(c, name);
	c->spaces[idx] = c->spaces[--c->nspaces];
	free(sp);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

int fl_client_space_root(struct fl_client *c, const char *name, const char *root, void **ret_ptr)
{
	const struct cl_space *sp;
	int r = -ENOENT;

	if (!c || !name || !root || !ret_ptr)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	sp = find_space(c, name, NULL);
	for (unsigned i = 0; sp && i < sp->desc.nroots; i++) {
		if (!strcmp(sp->desc.roots[i].name, root)) {
			*ret_ptr = (void *)(uintptr_t)sp->desc.roots[i].value;
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return r;
}

int fl_client_space_commit(struct fl_client *c, const char *name, uint64_t *ret_version)
{
	uint8_t p[FL_MGR_MAX_SPACE_NAME];
	uint64_t version = 0;
	size_t n;
	int len, r;

	if (!c || !name)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	if (!find_space(c, name, NULL)) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	len = fl__mgr_space_name_encode(p, name);
	r = len < 0 ? len : request(c, FL_MGR_SPACE_COMMIT, p, (size_t)len, -1, FL_MGR_COMMITTED, &n, NULL);
	if (!r)
		r = fl__mgr_u64_decode(c->buf + FL_MGR_HDR_SIZE, n, &version);
	pthread_mutex_unlock(&c->mu);
	if (!r && ret_version)
		*ret_version = version;
	return r;
}

int fl_manager_stats(const char *socket, unsigned timeout_ms, char **ret_json)
{
	struct fl_client_opts o = { .sz = sizeof(o), .socket = socket, .timeout_ms = timeout_ms };
	struct fl__mgr_welcome w;
	struct fl_client *c;
	size_t n;
	char *json;
	int s, r;

	if (!ret_json)
		return -EINVAL;
	r = client_alloc(&o, &c);
	if (r)
		return r;
	r = open_session(c, FL_MGR_ROLE_OBSERVER, 0, &s, &w);
	if (!r) {
		c->sock = s;
		r = request(c, FL_MGR_STATS, NULL, 0, -1, FL_MGR_STATS_JSON, &n, NULL);
	}
	if (!r) {
		json = malloc(n + 1);
		if (!json) {
			r = -ENOMEM;
		} else {
			memcpy(json, c->buf + FL_MGR_HDR_SIZE, n);
			json[n] = 0;
			*ret_json = json;
		}
	}
	fl_client_free(c);
	return r;
}
