// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * kv-server: a small in-memory key-value server that saves itself in the
 * background with a faultline live snapshot instead of fork(), the way an
 * in-memory database (Redis's BGSAVE) would.
 *
 * The whole table lives in one anonymous arena of fixed-size slots (open
 * addressing). Clients speak a line protocol over TCP on 127.0.0.1:
 *
 *   SET key value     -> +OK
 *   GET key           -> $value  or  -  (no such key)
 *   BGSAVE [INCR]     -> +STARTED path   (INCR: only what changed since the
 *                                          last save, an incremental image)
 *   LASTSAVE          -> +IDLE | +RUNNING | +DONE path stall_us total_ms
 *                        pages_cow pages_final rounds | -ERR message
 *                        (pages_cow: pages copied because a client wrote
 *                        them during the save: by the snapshot, or with
 *                        --fork-save by the kernel's copy-on-write, counted
 *                        as the server's page faults while the child ran;
 *                        pages_final: the pages the pause dealt with;
 *                        rounds: precopy rounds; both 0 with --fork-save)
 *   INFO              -> +keys N saves N last_stall_us N fork_save 0|1
 *   QUIT
 *
 * Saving: the worker threads hold a read lock per request; the snapshot's
 * quiesce callback takes the write lock, so the pause falls between
 * requests. A write watch runs from startup, so every save after the first
 * can be incremental. Which watch decides what clients pay:
 *  - asynchronous (FL_WATCH_ASYNC, kernels with WP_ASYNC, 6.7+): the first
 *    write to a page after a save is resolved inside the kernel, no thread
 *    of ours runs. Saves are precopy rounds (FL_SNAPSHOT_PRECOPY): a writer
 *    never waits for the saver, the pause copies the last few pages.
 *  - synchronous (FL_WATCH_SYNC, what 6.1 has): every first write after a
 *    save is a round trip to the watch's thread. Saves are copy-before-write
 *    (FL_SNAPSHOT_COW): the pause is shortest, a writer to an unsaved page
 *    waits while it is saved.
 * --track picks one (auto: the best the kernel has; none: no tracking, so
 * no incremental saves: the baseline of what tracking costs).
 * --save-nice N lowers the saving threads' priority (the snapshot's own
 * thread inherits it). Default 0: under a load that keeps every request
 * thread runnable, nice 10 left a precopy save of 1 GiB about 1 % of the
 * CPUs, and with every round slower the rounds never caught up with the
 * writes (a save still running after 12 minutes).
 * --fork-save does the classic thing instead: fork(), and the child writes
 * the arena.
 *
 *   kv-server [--port N] [--arena SIZE] [--dir DIR] [--load IMAGE] [--fork-save]
 *             [--track auto|async|sync|none] [--prefill N] [--save-nice N]
 *
 * SIZE is in bytes, with an optional K, M or G suffix (default 256M).
 * --prefill N stores keys k0 .. k<N-1> (values as kv-load writes them,
 * "k<i>:0:k<i>") before listening, and populates the whole arena, so a
 * benchmark starts from a server that holds its data.
 *
 * Build: see examples/meson.build (links libfaultline).
 */
#include <faultline/faultline.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAX 56
#define VAL_MAX 184

struct slot {
	uint64_t hash;			/* 0: empty */
	uint32_t klen, vlen;
	char key[KEY_MAX];
	char val[VAL_MAX];
};
_Static_assert(sizeof(struct slot) == 256, "slot size");

struct server {
	struct slot *arena;
	size_t arena_len;
	uint64_t nslots;
	pthread_rwlock_t quiesce;	/* requests: read; snapshot pause: write */
	/* The table's locks: one per stripe of consecutive slots, so a request
	 * that stalls (a page fault in the arena, a write watch's fault) holds
	 * up only the requests for its stripe, not every request. */
	pthread_mutex_t *stripe;
	uint64_t nstripes, stripe_slots;
	_Atomic uint64_t keys;
	const char *dir;
	bool fork_save;
	int save_nice;			/* the live save's threads (--save-nice) */
	struct fl_watch *watch;		/* NULL: --track none */
	/* save state */
	pthread_mutex_t save_lock;
	bool saving;
	int save_err;
	unsigned saves;
	char last_path[400];
	uint64_t last_stall_ns, last_total_ns, last_cow, last_final;
	unsigned last_rounds;
	char save_msg[256];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
	return h | 1;	/* never 0: 0 marks an empty slot */
}

/* Find the slot for a key (or the empty slot where it would go). */
static struct slot *lookup(struct server *s, const char *k, size_t n, uint64_t h)
{
	for (uint64_t i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->arena[(h + i) % s->nslots];
		if (!sl->hash || (sl->hash == h && sl->klen == n && !memcmp(sl->key, k, n)))
			return sl;
	}
	return NULL;
}

/* The stripe locks a request holds (see lookup_locked()). */
#define MAX_HELD 8
struct held {
	unsigned n;
	uint64_t st[MAX_HELD];
};

static void unlock_held(struct server *s, struct held *hd)
{
	while (hd->n)
		pthread_mutex_unlock(&s->stripe[hd->st[--hd->n]]);
}

/*
 * lookup() holding the stripe lock of every slot it looks at. The first is
 * waited for; the next ones (a probe that runs into the following stripe,
 * or round the table's end to the first) are only tried, since waiting for
 * one while holding another could deadlock with a probe the other way: a
 * busy one drops them all and the probe starts again. A probe through
 * more than MAX_HELD stripes (a nearly full table) finds nothing.
 */
static struct slot *lookup_locked(struct server *s, const char *k, size_t n, uint64_t h, struct held *hd)
{
	for (;;) {
		bool busy = false;
		hd->n = 0;
		for (uint64_t i = 0; i < s->nslots; i++) {
			uint64_t idx = (h + i) % s->nslots, st = idx / s->stripe_slots;
			struct slot *sl = &s->arena[idx];

			if (!hd->n || hd->st[hd->n - 1] != st) {
				if (hd->n == MAX_HELD)
					break;
				if (!hd->n)
					pthread_mutex_lock(&s->stripe[st]);
				else if (pthread_mutex_trylock(&s->stripe[st])) {
					busy = true;
					break;
				}
				hd->st[hd->n++] = st;
			}
			if (!sl->hash || (sl->hash == h && sl->klen == n && !memcmp(sl->key, k, n)))
				return sl;
		}
		unlock_held(s, hd);
		if (!busy)
			return NULL;
		sched_yield();
	}
}

/* ---- saving --------------------------------------------------------------- */

static int pause_workers(bool pause, void *ctx)
{
	struct server *s = ctx;

	if (pause)
		pthread_rwlock_wrlock(&s->quiesce);
	else
		pthread_rwlock_unlock(&s->quiesce);
	return 0;
}

struct save_job {
	struct server *s;
	bool incremental;
	char path[400];
	char parent[400];
};

static void *save_fork(struct save_job *j)
{
	struct server *s = j->s;
	uint64_t t0 = now_ns(), stall, cow = 0;
	struct rusage before, after;
	pid_t pid;
	int st = 0;

	getrusage(RUSAGE_SELF, &before);
	pid = fork();
	stall = now_ns() - t0;
	if (pid == 0) {
		/* The child sees the arena as it was at fork(). */
		struct fl_range r = { (uintptr_t)s->arena, s->arena_len };
		struct fl_image_writer_opts wo = { .sz = sizeof(wo), .creator = "kv-server fork" };
		_exit(fl_image_write_ranges(j->path, &r, 1, &wo) ? 1 : 0);
	}
	if (pid > 0) {
		waitpid(pid, &st, 0);
		/* Each first write to an arena page while the child runs makes
		 * the kernel copy it: a page fault of ours. Other faults are
		 * few here (the arena is allocated up front). */
		getrusage(RUSAGE_SELF, &after);
		if (after.ru_minflt > before.ru_minflt)
			cow = (uint64_t)(after.ru_minflt - before.ru_minflt);
	}
	pthread_mutex_lock(&s->save_lock);
	s->save_err = pid < 0 ? -errno : (WIFEXITED(st) && !WEXITSTATUS(st)) ? 0 : -EIO;
	s->last_stall_ns = stall;
	s->last_total_ns = now_ns() - t0;
	s->last_cow = cow;
	s->last_final = 0;
	s->last_rounds = 0;
	pthread_mutex_unlock(&s->save_lock);
	return NULL;
}

static void *save_thread(void *arg)
{
	struct save_job *j = arg;
	struct server *s = j->s;
	struct fl_range r = { (uintptr_t)s->arena, s->arena_len };
	struct fl_watch *ws[1] = { s->watch };
	/* Copy-before-write needs a synchronous watch; on any other (or
	 * none) the save is precopy rounds, which never hold a writer. */
	bool cow = s->watch && fl_watch_backend(s->watch) == FL_WATCH_SYNC;
	struct fl_snapshot_opts o = {
		.sz = sizeof(o),
		.strategy = cow ? FL_SNAPSHOT_COW : FL_SNAPSHOT_PRECOPY,
		.ranges = &r,
		.nr_ranges = 1,
		.parent = j->incremental ? j->parent : NULL,
		.watches = s->watch ? ws : NULL,
		.quiesce = pause_workers,
		.quiesce_ctx = s,
		.creator = "kv-server",
	};
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct fl_snapshot *snap;
	uint64_t t0 = now_ns();
	int ret;

	if (s->fork_save) {
		save_fork(j);
	} else {
		/* Requests first: this thread, and the snapshot's thread it
		 * creates (which inherits it), yield the CPUs to them. */
		if (s->save_nice)
			setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), s->save_nice);
		ret = fl_snapshot_new(j->path, &o, &snap);
		if (!ret) {
			ret = fl_snapshot_start(snap);
			if (!ret)
				ret = fl_snapshot_wait(snap, -1, NULL);
			fl_snapshot_progress(snap, &p);
			fl_snapshot_free(snap);
		}
		pthread_mutex_lock(&s->save_lock);
		s->save_err = ret;
		s->last_stall_ns = p.stall_ns;
		s->last_total_ns = now_ns() - t0;
		s->last_cow = p.pages_cow;
		s->last_final = p.pages_final;
		s->last_rounds = p.rounds;
		pthread_mutex_unlock(&s->save_lock);
	}
	pthread_mutex_lock(&s->save_lock);
	if (!s->save_err) {
		snprintf(s->last_path, sizeof(s->last_path), "%s", j->path);
		s->saves++;
	}
	s->saving = false;
	pthread_mutex_unlock(&s->save_lock);
	free(j);
	return NULL;
}

/* Start a background save; writes the reply. */
static void bgsave(struct server *s, bool incremental, char *reply, size_t len)
{
	struct save_job *j = calloc(1, sizeof(*j));
	pthread_t th;

	pthread_mutex_lock(&s->save_lock);
	if (!j || s->saving) {
		pthread_mutex_unlock(&s->save_lock);
		snprintf(reply, len, "-ERR %s\n", j ? "a save is running" : "out of memory");
		free(j);
		return;
	}
	if (incremental && (!s->saves || s->fork_save || !s->watch)) {
		pthread_mutex_unlock(&s->save_lock);
		snprintf(reply, len, "-ERR incremental needs an earlier faultline save\n");
		free(j);
		return;
	}
	j->s = s;
	j->incremental = incremental;
	snprintf(j->parent, sizeof(j->parent), "%s", s->last_path);
	snprintf(j->path, sizeof(j->path), "%s/dump-%u%s.img", s->dir, s->saves + 1, incremental ? "-incr" : "");
	s->saving = true;
	s->save_err = 0;
	pthread_mutex_unlock(&s->save_lock);
	snprintf(reply, len, "+STARTED %s\n", j->path);
	if (pthread_create(&th, NULL, save_thread, j)) {
		pthread_mutex_lock(&s->save_lock);
		s->saving = false;
		pthread_mutex_unlock(&s->save_lock);
		snprintf(reply, len, "-ERR cannot start a thread\n");
		free(j);
		return;
	}
	pthread_detach(th);
}

/* ---- requests ---------------------------------------------------------------- */

static void handle(struct server *s, char *line, char *reply, size_t len)
{
	/* strtok_r: every connection thread parses at once. */
	char *save = NULL, *cmd = strtok_r(line, " \r\n", &save), *k = strtok_r(NULL, " \r\n", &save),
	     *v = strtok_r(NULL, "\r\n", &save);

	if (!cmd) {
		snprintf(reply, len, "-ERR empty\n");
	} else if (!strcmp(cmd, "SET") || !strcmp(cmd, "GET")) {
		bool set = cmd[0] == 'S';
		size_t kn = k ? strlen(k) : 0, vn = v ? strlen(v) : 0;
		if (!kn || kn > KEY_MAX || (set && (!vn || vn > VAL_MAX))) {
			snprintf(reply, len, "-ERR bad key or value\n");
			return;
		}
		uint64_t h = hash_key(k, kn);
		pthread_rwlock_rdlock(&s->quiesce);
		struct held hd;
		struct slot *sl = lookup_locked(s, k, kn, h, &hd);
		if (set) {
			if (!sl) {
				snprintf(reply, len, "-ERR table full\n");
			} else {
				if (!sl->hash) {
					memcpy(sl->key, k, kn);
					sl->klen = (uint32_t)kn;
					atomic_fetch_add(&s->keys, 1);
				}
				memcpy(sl->val, v, vn);
				sl->vlen = (uint32_t)vn;
				sl->hash = h;
				snprintf(reply, len, "+OK\n");
			}
		} else if (sl && sl->hash) {
			snprintf(reply, len, "$%.*s\n", (int)sl->vlen, sl->val);
		} else {
			snprintf(reply, len, "-\n");
		}
		unlock_held(s, &hd);
		pthread_rwlock_unlock(&s->quiesce);
	} else if (!strcmp(cmd, "BGSAVE")) {
		bgsave(s, k && !strcmp(k, "INCR"), reply, len);
	} else if (!strcmp(cmd, "LASTSAVE")) {
		pthread_mutex_lock(&s->save_lock);
		if (s->saving)
			snprintf(reply, len, "+RUNNING\n");
		else if (s->save_err)
			snprintf(reply, len, "-ERR %s\n", strerror(-s->save_err));
		else if (!s->saves)
			snprintf(reply, len, "+IDLE\n");
		else
			snprintf(reply, len, "+DONE %s %llu %llu %llu %llu %u\n", s->last_path,
				 (unsigned long long)(s->last_stall_ns / 1000),
				 (unsigned long long)(s->last_total_ns / 1000000), (unsigned long long)s->last_cow,
				 (unsigned long long)s->last_final, s->last_rounds);
		pthread_mutex_unlock(&s->save_lock);
	} else if (!strcmp(cmd, "INFO")) {
		pthread_mutex_lock(&s->save_lock);
		snprintf(reply, len, "+keys %llu saves %u last_stall_us %llu fork_save %d\n",
			 (unsigned long long)atomic_load(&s->keys), s->saves,
			 (unsigned long long)(s->last_stall_ns / 1000), s->fork_save);
		pthread_mutex_unlock(&s->save_lock);
	} else {
		snprintf(reply, len, "-ERR unknown command\n");
	}
}

struct conn {
	struct server *s;
	int fd;
};

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	char buf[4096], reply[1024];
	size_t have = 0;

	for (;;) {
		ssize_t n = read(c->fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			size_t ll = (size_t)(nl - buf) + 1;
			char line[4096];
			memcpy(line, buf, ll);
			line[ll] = '\0';
			memmove(buf, buf + ll, have - ll);
			have -= ll;
			if (!strncmp(line, "QUIT", 4))
				goto out;
			handle(c->s, line, reply, sizeof(reply));
			if (write(c->fd, reply, strlen(reply)) < 0)
				goto out;
		}
		if (have == sizeof(buf) - 1)
			break;	/* a line too long: drop the client */
	}
out:
	close(c->fd);
	free(c);
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: kv-server [--port N] [--arena SIZE] [--dir DIR] [--load IMAGE] [--fork-save]\n"
			"                 [--track auto|async|sync|none] [--prefill N] [--save-nice N]\n"
			"  SIZE: bytes, with an optional K, M or G suffix (default 256M)\n");
	return 2;
}

/* "4096", "64M", "1G": bytes, a whole number of pages; 0 on a bad value. */
static size_t parse_arena(const char *v)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v)
		return 0;
	switch (*end) {
	case 'K': case 'k': n <<= 10; end++; break;
	case 'M': case 'm': n <<= 20; end++; break;
	case 'G': case 'g': n <<= 30; end++; break;
	}
	if (*end || !n || n % 4096 || n > (1ull << 40))
		return 0;
	return (size_t)n;
}

/* Keys k0 .. k<n-1>, before any client or watch: no locks needed. */
static int prefill(struct server *s, unsigned long long n)
{
	char k[32], v[96];

	/* Every page holds data, as in a server that has run a while. */
	madvise(s->arena, s->arena_len, MADV_POPULATE_WRITE);
	for (unsigned long long i = 0; i < n; i++) {
		int kn = snprintf(k, sizeof(k), "k%llu", i);
		int vn = snprintf(v, sizeof(v), "%s:0:%s", k, k);
		uint64_t h = hash_key(k, (size_t)kn);
		struct slot *sl = lookup(s, k, (size_t)kn, h);

		if (!sl)
			return -ENOSPC;
		if (!sl->hash) {
			memcpy(sl->key, k, (size_t)kn);
			sl->klen = (uint32_t)kn;
			s->keys++;
		}
		memcpy(sl->val, v, (size_t)vn);
		sl->vlen = (uint32_t)vn;
		sl->hash = h;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct server s = { .dir = "/var/tmp" };
	const char *load = NULL, *track = "auto";
	unsigned long long fill = 0;
	size_t arena = 256u << 20;
	int port = 0, lfd, one = 1, ret;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--arena") && i + 1 < argc) {
			arena = parse_arena(argv[++i]);
			if (!arena) {
				fprintf(stderr, "kv-server: --arena wants a size in bytes (K, M, G suffixes), "
						"a multiple of 4096 up to 1T, not '%s'\n", argv[i]);
				return 2;
			}
		}
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			s.dir = argv[++i];
		else if (!strcmp(argv[i], "--load") && i + 1 < argc)
			load = argv[++i];
		else if (!strcmp(argv[i], "--fork-save"))
			s.fork_save = true;
		else if (!strcmp(argv[i], "--track") && i + 1 < argc)
			track = argv[++i];
		else if (!strcmp(argv[i], "--save-nice") && i + 1 < argc)
			s.save_nice = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--prefill") && i + 1 < argc)
			fill = strtoull(argv[++i], NULL, 10);
		else
			return usage();
	}
	signal(SIGPIPE, SIG_IGN);
	s.arena_len = arena;
	s.nslots = arena / sizeof(struct slot);
	s.arena = mmap(NULL, arena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s.arena == MAP_FAILED)
		return perror("mmap"), 1;
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* Writer preference: a pending pause is not starved by a stream of requests. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s.quiesce, &ra);
	/* Stripes of at least 64 slots (a probe at half load never runs
	 * through MAX_HELD of them), at most 4096 stripes. */
	s.stripe_slots = s.nslots / 4096 > 64 ? s.nslots / 4096 : 64;
	s.nstripes = (s.nslots + s.stripe_slots - 1) / s.stripe_slots;
	s.stripe = calloc(s.nstripes, sizeof(*s.stripe));
	if (!s.stripe)
		return perror("kv-server"), 1;
	for (uint64_t i = 0; i < s.nstripes; i++)
		pthread_mutex_init(&s.stripe[i], NULL);
	pthread_mutex_init(&s.save_lock, NULL);

	if (load) {
		struct fl_image *img;
		struct fl_image_region r = { .sz = sizeof(r) };
		ret = fl_image_open(load, 0, &img);
		if (!ret)
			ret = fl_image_region(img, 0, &r);
		if (!ret && r.length != arena)
			ret = -EINVAL;
		if (!ret)
			ret = fl_image_restore(img, 0, s.arena);
		if (ret) {
			fprintf(stderr, "kv-server: loading %s: %s\n", load, strerror(-ret));
			return 1;
		}
		fl_image_close(img);
		for (uint64_t i = 0; i < s.nslots; i++)
			s.keys += s.arena[i].hash != 0;
		snprintf(s.last_path, sizeof(s.last_path), "%s", load);
	}
	if (fill && (ret = prefill(&s, fill))) {
		fprintf(stderr, "kv-server: --prefill %llu: the arena holds %llu slots\n", fill,
			(unsigned long long)s.nslots);
		return 1;
	}
	enum fl_watch_backend be = FL_WATCH_AUTO;
	if (!strcmp(track, "async"))
		be = FL_WATCH_ASYNC;
	else if (!strcmp(track, "sync"))
		be = FL_WATCH_SYNC;
	else if (strcmp(track, "auto") && strcmp(track, "none"))
		return usage();
	if (!s.fork_save && strcmp(track, "none")) {
		/* From now on, what changes is tracked: saves after the first
		 * can be incremental. */
		struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = be };
		ret = fl_watch_new(s.arena, arena, &wo, &s.watch);
		if (ret) {
			fprintf(stderr, "kv-server: fl_watch_new: %s\n", strerror(-ret));
			return 1;
		}
	}

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 128) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		return perror("listen"), 1;
	static const char *const be_name[] = { "auto", "async", "sync", "mprotect" };
	printf("kv-server: listening on 127.0.0.1:%d, %zu MiB arena (%llu slots), %s saves in %s, tracking %s\n",
	       ntohs(sa.sin_port), arena >> 20, (unsigned long long)s.nslots,
	       s.fork_save ? "fork()" : "faultline live-snapshot", s.dir,
	       s.watch ? be_name[fl_watch_backend(s.watch)] : "none");
	fflush(stdout);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c;
		pthread_t th;

		if (fd < 0)
			continue;
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		*c = (struct conn){ &s, fd };
		if (pthread_create(&th, NULL, conn_thread, c)) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(th);
	}
}
