// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * kv-server: a small in-memory key-value server that saves itself in the
 * background with a faultline live snapshot instead of fork(), the way an
 * in-memory database (Redis's BGSAVE) would, and moves itself to another
 * host (or network namespace) with faultline's live migration while its
 * clients keep writing.
 *
 * The whole table lives in one anonymous arena of fixed-size slots (open
 * addressing). Clients speak a line protocol over TCP on --listen ADDR
 * (default 127.0.0.1):
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
 *   MIGRATE [precopy|postcopy|hybrid]
 *                     -> +STARTED mode  (to --migrate-to; default hybrid;
 *                                        SIGUSR2 starts a hybrid one too)
 *   MIGRATION         -> +IDLE | +RUNNING state | +RUNNING recovering N
 *                        | +DONE downtime_us total_ms rounds recoveries
 *                        | -ERR message
 *                        (state: connecting, precopy, switchover, postcopy;
 *                        recovering N: cut after the switchover and
 *                        reconnecting, N recoveries so far; -ERR: the last
 *                        migration failed before its switchover, and this
 *                        server kept serving)
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
 * Migrating (<faultline/migrate.h>): the source, started with
 * --migrate-to HOST:PORT, opens two connections to HOST:PORT
 * (fl_migrate_connect(); the library's HELLO tells them apart) when told
 * to (MIGRATE, SIGUSR2, or `faultline migrate start` on its --control
 * socket, which may name another HOST:PORT) and sends the arena while
 * clients keep writing; its pause is the same write lock as a save's, and
 * the table's header (slots, keys) travels in the migration's blob, read
 * at the pause. Once the destination runs, the source closes every client
 * connection without answering what arrived after the pause (those
 * requests were never applied here: the clients re-send them to the
 * destination), serves the pages the destination still needs, logs the
 * migration's statistics and exits 0; a failure after the switchover exits
 * 1 with the cause. A migration that fails before its switchover leaves
 * the server serving with its memory intact (MIGRATION says why).
 * The destination, started with --incoming PORT, listens for the source on
 * --listen ADDR:PORT, and allocates nothing before the layout arrives: the
 * library maps the arena at the source's address, which must be free in
 * this process (the source places its arena far from where the kernel puts
 * libraries, heaps and thread stacks, so it is). It needs no --arena,
 * --load or --prefill: the arena and the table's header come from the
 * source. At the switchover it starts serving clients at once on --listen
 * ADDR:--port (bound at startup, so a port in use fails before anything
 * moves), while the arena's pages arrive on demand and in the background;
 * it prints "listening on ADDR:PORT" then, and "migration done ..." with
 * the statistics when every page is here. If the source dies or the
 * connection is cut after the switchover, the pages that did not arrive are
 * poisoned (never zeros) and the server exits 1 with the cause: a client
 * gets a right value or a closed connection, never a wrong value.
 * --migrate-no-push: no background push after the switchover, pages move
 * only when the destination faults on them (a demonstration of postcopy on
 * demand, and a test of a source lost mid-fetch).
 *
 * TLS: plaintext by default. --migrate-psk IDENTITY:KEYFILE (the file
 * holds the key in hex, and must be readable by its owner only) or X.509:
 * --migrate-cert CERT --migrate-key KEY (this end's certificate) and
 * --migrate-ca CA (the peer's must be signed by it; a destination with
 * --migrate-ca requires the source's certificate: mutual). The same
 * options on both ends (a server that arrived by migration may move on
 * with them); a mismatch fails the migration before its switchover
 * (MIGRATION -ERR says which options must agree), and the source serves
 * on. The destination's host name is not checked against its
 * certificate, only its signature by CA.
 *
 * Recovery: a connection cut after the switchover (a network blip, a
 * restarted middlebox) pauses the migration instead of failing it, for up
 * to --migrate-recovery-ms (default 30000): the source connects to the
 * same HOST:PORT again, the destination accepts on the listening socket it
 * kept, and the missing pages move again. Meanwhile the destination serves
 * every key whose page is here; a request for a key on a missing page
 * waits (its thread is blocked in the page fault) and gets its answer
 * after the recovery. When the time passes, the destination poisons the
 * missing pages and exits 1, as after a source lost for good.
 *
 * --control PATH: a control socket (fl_migrate_ctl_new(), mode 0600: its
 * permission is the access control) for `faultline migrate start|status|
 * watch|cancel --control PATH`, on either end. A source that switched
 * over lingers 2 s before exiting, so that a watch sees how it ended; a
 * destination keeps reporting the migration that brought it until it
 * starts one of its own (with MIGRATE or SIGUSR2: the control socket
 * refuses start while it reports an incoming migration).
 *
 *   kv-server [--listen ADDR] [--port N] [--arena SIZE] [--dir DIR] [--load IMAGE]
 *             [--fork-save] [--track auto|async|sync|none] [--prefill N]
 *             [--save-nice N] [--migrate-to HOST:PORT] [--migrate-no-push]
 *             [MIGRATION OPTIONS]
 *   kv-server --incoming PORT [--listen ADDR] [--port N] [--dir DIR] [--track ...]
 *             [MIGRATION OPTIONS]
 *   MIGRATION OPTIONS: [--control PATH] [--migrate-recovery-ms N]
 *             [--migrate-psk IDENTITY:KEYFILE |
 *              --migrate-cert CERT --migrate-key KEY --migrate-ca CA]
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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/*
 * What the destination needs besides the arena's bytes, sent as the
 * migration's blob (read at the pause, so the key count is exact). Both
 * ends are this program on the same architecture: host byte order.
 */
#define BLOB_MAGIC "kv-mig1"
struct kv_blob {
	char magic[8];
	uint64_t arena_addr, arena_len;
	uint64_t nslots, keys;
	uint64_t pause_realtime_ns;	/* the destination's downtime estimate */
	uint32_t rounds, mode;		/* precopy rounds run before the pause */
};

enum mig_phase {
	MIG_IDLE,
	MIG_CONNECTING,
	MIG_PRECOPY,
	MIG_SWITCHOVER,			/* paused; the destination is resuming */
	MIG_POSTCOPY,			/* the destination serves; pages still move */
	MIG_DONE,
	MIG_FAILED,
};
static const char *const phase_name[] = { "idle", "connecting", "precopy", "switchover", "postcopy", "done",
					  "failed" };
static const char *const mode_name[] = { "precopy", "postcopy", "hybrid" };

/* A client connection; listed so that a migration can cut them all. */
struct conn {
	struct server *s;
	int fd;
	struct conn *prev, *next;
};

struct server {
	struct slot *arena;
	size_t arena_len;
	uint64_t nslots;
	pthread_rwlock_t quiesce;	/* requests: read; snapshot and migration pause: write */
	/* The table's locks: one per stripe of consecutive slots, so a request
	 * that stalls (a page fault in the arena, a write watch's fault) holds
	 * up only the requests for its stripe, not every request. */
	pthread_mutex_t *stripe;
	uint64_t nstripes, stripe_slots;
	_Atomic uint64_t keys;
	const char *dir;
	bool fork_save;
	int save_nice;			/* the live save's threads (--save-nice) */
	struct fl_watch *watch;		/* NULL: --track none, or a migration runs */
	bool track;			/* --track is not none */
	enum fl_watch_backend track_backend;
	/* save state (save_lock) */
	pthread_mutex_t save_lock;
	bool saving;
	bool track_gap;			/* a migration ran untracked: the next save is full */
	int save_err;
	unsigned saves;
	char last_path[400];
	uint64_t last_stall_ns, last_total_ns, last_cow, last_final;
	unsigned last_rounds;
	char save_msg[256];
	/* clients */
	struct sockaddr_in listen_addr;	/* --listen, --port */
	pthread_mutex_t conns_lock;
	struct conn *conns;
	int wake_fd;			/* eventfd: the accept loop looks at the migration */
	/* migration (mig_lock; the phase also read without it) */
	const char *migrate_to;		/* --migrate-to HOST:PORT */
	char mig_target[256];		/* this migration's HOST:PORT (--migrate-to, or start's --to) */
	bool migrate_no_push;
	/* TLS on the migration's channels: FL_TLS_NONE (plaintext), FL_TLS_PSK
	 * (--migrate-psk) or FL_TLS_X509 (--migrate-cert, --migrate-key,
	 * --migrate-ca); the same options serve both roles. */
	enum fl_tls_mode tls;
	const char *psk_identity, *cert_file, *key_file, *ca_file;
	char psk_key_hex[256];
	unsigned recovery_ms;		/* --migrate-recovery-ms */
	struct fl_migrate_ctl *ctl;	/* --control */
	/* A source that ended, kept attached to the control socket so that
	 * status (and a watch) sees how it ended; freed by the next start. */
	struct fl_migrate_source *mig_src_ended;
	unsigned mig_recoveries;
	pthread_mutex_t mig_lock;
	pthread_cond_t mig_cond;
	_Atomic int mig_phase;		/* enum mig_phase */
	enum fl_migrate_mode mig_mode;
	struct fl_migrate_source *mig_src;
	_Atomic bool mig_paused;	/* quiesce(PAUSE) without RESUME: switched over */
	bool mig_finished;		/* the migration thread is done with it */
	int mig_exit;			/* the source's exit status after a switchover */
	char mig_msg[256];		/* MIGRATION's -ERR */
	uint64_t mig_downtime_ns, mig_total_ns;
	unsigned mig_rounds;
	struct kv_blob blob;
	/* --incoming */
	int client_lfd;			/* bound at startup, listening from the switchover */
	struct fl_migrate_dest *mig_dst;
	int mig_fds[2];			/* bulk, urgent */
	int mig_lfd;			/* listening for the source: kept for its reconnections */
	int src_fds[2];			/* the source's bulk, urgent (the library never closes them) */
	bool incoming;
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
		if (!j->incremental)
			s->track_gap = false;
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

	int phase;

	/* A save and a migration exclude each other (both pause the workers,
	 * and both need the arena's write tracking): start_migration() sets
	 * the phase under save_lock too. */
	pthread_mutex_lock(&s->save_lock);
	phase = atomic_load(&s->mig_phase);
	if (!j || s->saving || (phase != MIG_IDLE && phase != MIG_DONE && phase != MIG_FAILED)) {
		pthread_mutex_unlock(&s->save_lock);
		snprintf(reply, len, "-ERR %s\n", !j ? "out of memory" : s->saving ? "a save is running"
									: "a migration is running");
		free(j);
		return;
	}
	if (incremental && (!s->saves || s->fork_save || !s->watch || s->track_gap)) {
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

/* ---- migrating ---------------------------------------------------------------- */

/*
 * The source places its arena here (a hint: elsewhere if taken). The
 * destination maps the arena at the source's address in a process that
 * already holds its libraries, heap and thread stacks, which the kernel
 * puts near the top of the address space or next to the program, at
 * random offsets: an address far from both is free there too.
 */
#define ARENA_HINT ((void *)0x600000000000ull)

static void wake_main(struct server *s)
{
	uint64_t one = 1;

	(void)!write(s->wake_fd, &one, sizeof(one));
}

static void mig_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	/* The library's rounds and switchover are DEBUG: a line each here. */
	if (level <= FL_LOG_INFO || !strncmp(msg, "migrate:", 8))
		fprintf(stderr, "kv-server: %s\n", msg);
}

/* "HOST:PORT", HOST a name or an IPv4 address. */
static int resolve(const char *hostport, struct sockaddr_in *ret_addr)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	const char *colon = strrchr(hostport, ':');
	char host[256];

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) || !colon[1])
		return -EINVAL;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -EHOSTUNREACH;
	memcpy(ret_addr, ai->ai_addr, sizeof(*ret_addr));
	freeaddrinfo(ai);
	return 0;
}

/*
 * What an error of the migration means for an operator: TLS refusals say
 * which options must agree (the library logs the handshake's own cause).
 */
static const char *mig_strerror(int r)
{
	if (r == -EACCES)
		return "TLS refused the credentials (both ends need the same --migrate-psk key, or certificates "
		       "signed by the peer's --migrate-ca)";
	if (r == -EPROTO)
		return "the ends do not speak the same protocol (TLS on one end only: both need the same "
		       "--migrate-psk or --migrate-cert options, or neither)";
	return strerror(-r);
}

/*
 * Recovery (the library calls these after a cut in postcopy, until they
 * succeed or --migrate-recovery-ms passes): the source connects to the
 * same address again; the destination accepts on the socket it kept.
 * Short timeouts: the library calls again, and gives up on time itself.
 */
static int src_reconnect(void *ctx, int *ret_bulk, int *ret_urgent)
{
	struct server *s = ctx;

	return fl_migrate_connect(s->mig_target, 1000, ret_bulk, ret_urgent);
}

static int dst_reconnect(void *ctx, int *ret_bulk, int *ret_urgent)
{
	struct server *s = ctx;

	return fl_migrate_accept(s->mig_lfd, 1000, ret_bulk, ret_urgent);
}

/*
 * The source's pause: the snapshot's (the write side of the requests'
 * lock), then the table's header into the blob, which the library reads
 * after this returns. After the switchover the lock is never given back:
 * a request waiting for it is never applied here, and never answered.
 */
static int mig_quiesce(enum fl_migrate_quiesce action, void *ctx)
{
	struct server *s = ctx;

	if (action == FL_MIGRATE_PAUSE) {
		struct fl_migrate_stats st = { .sz = sizeof(st) };
		struct timespec ts;

		pthread_rwlock_wrlock(&s->quiesce);
		fl_migrate_source_stats(s->mig_src, &st);
		clock_gettime(CLOCK_REALTIME, &ts);
		s->blob = (struct kv_blob){
			.magic = BLOB_MAGIC,
			.arena_addr = (uint64_t)(uintptr_t)s->arena,
			.arena_len = s->arena_len,
			.nslots = s->nslots,
			.keys = atomic_load(&s->keys),
			.pause_realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec,
			.rounds = st.rounds,
			.mode = s->mig_mode,
		};
		atomic_store(&s->mig_phase, MIG_SWITCHOVER);
		atomic_store(&s->mig_paused, true);
		wake_main(s);
	} else {
		atomic_store(&s->mig_paused, false);
		atomic_store(&s->mig_phase, MIG_PRECOPY);
		pthread_rwlock_unlock(&s->quiesce);
	}
	return 0;
}

/* The arena's write tracking for saves (--track); not while a migration
 * runs, whose own watch needs the arena (a range takes one userfaultfd). */
static int track_start(struct server *s)
{
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = s->track_backend };
	int r = 0;

	pthread_mutex_lock(&s->save_lock);
	if (s->track && !s->watch)
		r = fl_watch_new(s->arena, s->arena_len, &wo, &s->watch);
	pthread_mutex_unlock(&s->save_lock);
	return r;
}

/*
 * Connect to s->mig_target and create the source, attached to the control
 * socket; on failure *msg says why. In the migration's thread for MIGRATE
 * and SIGUSR2 (the reply goes first), in the control thread for a
 * control socket's start (whose requester gets the error).
 */
static int mig_prepare(struct server *s, char *msg, size_t len)
{
	struct fl_migrate_range range = { s->arena, s->arena_len, FL_MEM_ANON };
	struct fl_migrate_source *src;
	int r;

	r = fl_migrate_connect(s->mig_target, 5000, &s->src_fds[0], &s->src_fds[1]);
	if (r) {
		snprintf(msg, len, "cannot connect to %.200s: %s", s->mig_target, strerror(-r));
		return r;
	}
	r = fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts),
		.ranges = &range, .nranges = 1,
		.bulk_fd = s->src_fds[0], .urgent_fd = s->src_fds[1],
		.mode = s->mig_mode,
		.flags = s->migrate_no_push ? FL_MIGRATE_NO_PUSH : 0,
		.quiesce = mig_quiesce, .quiesce_ctx = s,
		.blob = &s->blob, .blob_len = sizeof(s->blob),
		.log = mig_log,
		.tls = s->tls, .psk_identity = s->psk_identity,
		.psk_key_hex = s->tls == FL_TLS_PSK ? s->psk_key_hex : NULL,
		.cert_file = s->cert_file, .key_file = s->key_file, .ca_file = s->ca_file,
		.reconnect = src_reconnect, .reconnect_ctx = s,
		.recovery_ms = s->recovery_ms }, &src);
	if (r) {
		snprintf(msg, len, "%s", mig_strerror(r));
		close(s->src_fds[0]);
		close(s->src_fds[1]);
		s->src_fds[0] = s->src_fds[1] = -1;
		return r;
	}
	pthread_mutex_lock(&s->mig_lock);
	s->mig_src = src;
	pthread_mutex_unlock(&s->mig_lock);
	if (s->ctl)
		fl_migrate_ctl_set_source(s->ctl, src);
	return 0;
}

static void close_src_fds(struct server *s)
{
	for (int i = 0; i < 2; i++) {
		if (s->src_fds[i] >= 0)
			close(s->src_fds[i]);
		s->src_fds[i] = -1;
	}
}

static void *migrate_thread(void *arg)
{
	struct server *s = arg;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_source *src;
	bool switched;
	char msg[256];
	int r = 0;

	if (!s->mig_src)
		r = mig_prepare(s, msg, sizeof(msg));
	src = s->mig_src;
	if (!r) {
		atomic_store(&s->mig_phase, MIG_PRECOPY);
		r = fl_migrate_source_run(src);
		fl_migrate_source_stats(src, &st);
		snprintf(msg, sizeof(msg), "%s", mig_strerror(r));
	}
	/* Paused and never resumed: the switchover happened. */
	switched = atomic_load(&s->mig_paused);
	if (switched && !r) {
		char per_round[256] = "";
		size_t o = 0;

		for (unsigned i = 0; i < st.rounds && i < FL_MIGRATE_MAX_ROUNDS && o < sizeof(per_round) - 24; i++)
			o += (size_t)snprintf(per_round + o, sizeof(per_round) - o, "%s%llu", i ? "," : "",
					      (unsigned long long)st.pages_per_round[i]);
		printf("kv-server: migration done (%s, to %s): downtime_us %llu total_ms %llu rounds %u "
		       "pages_per_round %s pages_sent %llu zero_pages %llu bytes_sent %llu requests %llu pushed %llu "
		       "recoveries %u recovery_ms %llu\n",
		       mode_name[s->mig_mode], s->mig_target, (unsigned long long)(st.downtime_ns / 1000),
		       (unsigned long long)(st.total_ns / 1000000), st.rounds, o ? per_round : "-",
		       (unsigned long long)st.pages_sent, (unsigned long long)st.zero_pages,
		       (unsigned long long)st.bytes_sent, (unsigned long long)st.requests,
		       (unsigned long long)st.pushed, st.recoveries, (unsigned long long)(st.recovery_ns / 1000000));
	} else if (switched) {
		fprintf(stderr, "kv-server: the migration failed after its switchover: %s (the destination fails "
				"closed; this server cannot resume)\n", msg);
	} else {
		/* quiesce(RESUME) ran, or no pause: the arena is intact, the
		 * requests go on. */
		fprintf(stderr, "kv-server: the migration failed before its switchover: %s; serving on\n", msg);
		int t = track_start(s);

		if (t)
			fprintf(stderr, "kv-server: tracking writes again: %s\n", strerror(-t));
	}
	fflush(stdout);
	/* A server that switched over exits when this thread is finished:
	 * with a control socket it first lingers, so that a `faultline
	 * migrate watch` polling it sees the final state rather than a
	 * socket gone away. */
	if (switched && s->ctl)
		sleep(2);
	pthread_mutex_lock(&s->mig_lock);
	s->mig_src = NULL;
	s->mig_finished = true;
	s->mig_exit = r ? 1 : 0;
	s->mig_downtime_ns = st.downtime_ns;
	s->mig_total_ns = st.total_ns;
	s->mig_rounds = st.rounds;
	s->mig_recoveries = st.recoveries;
	snprintf(s->mig_msg, sizeof(s->mig_msg), "%s", msg);
	/* Still attached (status tells how it ended) until the next start
	 * or the exit frees it. */
	if (s->ctl && src) {
		s->mig_src_ended = src;
		src = NULL;
	}
	atomic_store(&s->mig_phase, r ? MIG_FAILED : MIG_DONE);
	pthread_cond_broadcast(&s->mig_cond);
	pthread_mutex_unlock(&s->mig_lock);
	fl_migrate_source_free(src);
	if (!s->mig_src_ended)
		close_src_fds(s);
	wake_main(s);
	return NULL;
}

/* A migration that never began: MIGRATION says why; saves are tracked again. */
static void mig_fail_early(struct server *s, const char *why)
{
	pthread_mutex_lock(&s->mig_lock);
	snprintf(s->mig_msg, sizeof(s->mig_msg), "%s", why);
	s->mig_finished = true;
	atomic_store(&s->mig_phase, MIG_FAILED);
	pthread_mutex_unlock(&s->mig_lock);
	fprintf(stderr, "kv-server: the migration failed before its switchover: %s; serving on\n", why);
	track_start(s);
}

/* Start the migration start_migration() prepared. */
static void launch_migration(struct server *s)
{
	pthread_t th;

	if (pthread_create(&th, NULL, migrate_thread, s)) {
		mig_fail_early(s, "cannot start a thread");
		return;
	}
	pthread_detach(th);
}

/*
 * MIGRATE, SIGUSR2 or the control socket's start: to HOST:PORT (NULL:
 * --migrate-to); writes the reply. 0 when the caller must
 * launch_migration(), after sending the reply: a postcopy switches over
 * within milliseconds, and cuts every client, the one that asked
 * included. Otherwise -errno for the control socket's requester.
 */
static int start_migration(struct server *s, enum fl_migrate_mode m, const char *to, char *reply, size_t len)
{
	struct fl_migrate_source *old_src;
	struct fl_migrate_dest *old_dst = NULL;
	int phase;

	if (!to && !s->migrate_to) {
		snprintf(reply, len, "-ERR started without --migrate-to\n");
		return -EDESTADDRREQ;
	}
	if (to && strlen(to) >= sizeof(s->mig_target)) {
		snprintf(reply, len, "-ERR the destination's address is too long\n");
		return -EINVAL;
	}
	pthread_mutex_lock(&s->save_lock);
	phase = atomic_load(&s->mig_phase);
	if (!s->arena || s->saving || (phase != MIG_IDLE && phase != MIG_DONE && phase != MIG_FAILED)) {
		pthread_mutex_unlock(&s->save_lock);
		snprintf(reply, len, "-ERR %s\n", !s->arena ? "receiving a migration" : s->saving ? "a save is running"
											 : "a migration is running");
		return s->saving || !s->arena ? -EBUSY : -EALREADY;
	}
	/* The migration's precopy watches the arena itself. What is written
	 * meanwhile is not tracked for saves: the next one is full. */
	s->watch = fl_watch_free(s->watch);
	s->track_gap = true;
	pthread_mutex_lock(&s->mig_lock);
	/* What the control socket still reports: the last migration from
	 * here, or the one that brought this server here (done). */
	old_src = s->mig_src_ended;
	s->mig_src_ended = NULL;
	if (s->incoming && phase == MIG_DONE) {
		old_dst = s->mig_dst;
		s->mig_dst = NULL;
	}
	s->mig_mode = m;
	s->mig_finished = false;
	s->mig_msg[0] = '\0';
	snprintf(s->mig_target, sizeof(s->mig_target), "%s", to ? to : s->migrate_to);
	atomic_store(&s->mig_phase, MIG_CONNECTING);
	pthread_mutex_unlock(&s->mig_lock);
	pthread_mutex_unlock(&s->save_lock);
	/* Detached outside the locks: detaching waits for a control request
	 * that uses the object, and a start request holds the control thread. */
	if (old_src) {
		fl_migrate_ctl_set_source(s->ctl, NULL);
		fl_migrate_source_free(old_src);
		close_src_fds(s);
	}
	if (old_dst) {
		fl_migrate_ctl_set_dest(s->ctl, NULL);
		fl_migrate_dest_free(old_dst);
		close(s->mig_fds[0]);
		close(s->mig_fds[1]);
	}
	snprintf(reply, len, "+STARTED %s\n", mode_name[m]);
	return 0;
}

/* The control socket's start (in its thread): the same as MIGRATE, but the
 * connection and the source are made here, so that the requester hears
 * of a destination that cannot be reached, and a watch finds the source. */
static int ctl_start(void *ctx, const char *to, enum fl_migrate_mode mode)
{
	struct server *s = ctx;
	char reply[256], msg[256];
	int r = start_migration(s, mode, to, reply, sizeof(reply));

	if (r)
		return r;
	r = mig_prepare(s, msg, sizeof(msg));
	if (r) {
		mig_fail_early(s, msg);
		return r;
	}
	launch_migration(s);
	return 0;
}

static void migration_reply(struct server *s, char *reply, size_t len)
{
	int phase;

	struct fl_migrate_stats st = { .sz = sizeof(st) };

	pthread_mutex_lock(&s->mig_lock);
	phase = atomic_load(&s->mig_phase);
	if (phase == MIG_IDLE)
		snprintf(reply, len, "+IDLE\n");
	else if (phase == MIG_DONE)
		snprintf(reply, len, "+DONE %llu %llu %u %u\n", (unsigned long long)(s->mig_downtime_ns / 1000),
			 (unsigned long long)(s->mig_total_ns / 1000000), s->mig_rounds, s->mig_recoveries);
	else if (phase == MIG_FAILED)
		snprintf(reply, len, "-ERR %s\n", s->mig_msg);
	else if (phase == MIG_POSTCOPY &&
		 ((s->mig_src && !fl_migrate_source_stats(s->mig_src, &st)) ||
		  (s->incoming && s->mig_dst && !fl_migrate_dest_stats(s->mig_dst, &st))) &&
		 st.state == FL_MIGRATE_STATE_RECOVERING)
		/* Cut, and reconnecting: clients touching a page that has
		 * not arrived wait for it. */
		snprintf(reply, len, "+RUNNING recovering %u\n", st.recoveries);
	else
		snprintf(reply, len, "+RUNNING %s\n", phase_name[phase]);
	pthread_mutex_unlock(&s->mig_lock);
}

/*
 * The source, from the accept loop: has the destination taken over? Yes
 * once it reported running (the library's downtime is set when its
 * RESUMED arrives), or the migration ended after the switchover.
 */
static bool moved_away(struct server *s)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	bool moved;

	if (!atomic_load(&s->mig_paused))
		return false;
	pthread_mutex_lock(&s->mig_lock);
	moved = s->mig_finished || (s->mig_src && !fl_migrate_source_stats(s->mig_src, &st) && st.downtime_ns);
	if (moved && !s->mig_finished)
		atomic_store(&s->mig_phase, MIG_POSTCOPY);
	pthread_mutex_unlock(&s->mig_lock);
	return moved;
}

/* ---- the incoming side ---------------------------------------------------------- */

static void on_sigbus(int sig)
{
	static const char msg[] = "kv-server: a page of the arena never arrived (the incoming migration failed "
				  "after its switchover): exiting\n";

	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(1);
}

/* After the switchover nothing can be undone: a destination that cannot
 * serve exits, and the source, cut off, fails too. */
static void incoming_die(const char *why)
{
	fprintf(stderr, "kv-server: incoming migration: %s: exiting\n", why);
	fflush(stdout);
	_exit(1);
}

static int init_table(struct server *s);

/*
 * The library's resume callback (in its bulk thread, at the switchover):
 * take the table's header and start listening for clients. It leaves the
 * arena alone: a fault here would be served, but every fetch would add to
 * the downtime, which lasts until this returns.
 */
static void dest_resume(const void *blob, size_t blob_len, void *ctx)
{
	struct server *s = ctx;
	struct kv_blob b;
	struct timespec ts;
	uint64_t now;

	if (blob_len != sizeof(b))
		incoming_die("the source's table header has the wrong size");
	memcpy(&b, blob, sizeof(b));
	if (memcmp(b.magic, BLOB_MAGIC, sizeof(b.magic)) || !b.arena_len || b.arena_len % 4096 ||
	    b.nslots != b.arena_len / sizeof(struct slot) || b.keys > b.nslots || b.mode > FL_MIGRATE_HYBRID)
		incoming_die("the source's table header is not kv-server's");
	/* MS_ASYNC on anonymous memory checks the mapping without touching
	 * a page: the arena must be one of the ranges the library mapped. */
	if (msync((void *)(uintptr_t)b.arena_addr, b.arena_len, MS_ASYNC))
		incoming_die("the arena is not in the migration's layout");
	s->arena = (struct slot *)(uintptr_t)b.arena_addr;
	s->arena_len = b.arena_len;
	s->nslots = b.nslots;
	atomic_store(&s->keys, b.keys);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (init_table(s) || listen(s->client_lfd, 128))
		incoming_die("cannot serve clients");
	pthread_mutex_lock(&s->mig_lock);
	s->mig_mode = (enum fl_migrate_mode)b.mode;
	s->mig_rounds = b.rounds;
	/* Wall clocks of two hosts: as good as their synchronisation (one
	 * host's namespaces share one clock). */
	s->mig_downtime_ns = now > b.pause_realtime_ns ? now - b.pause_realtime_ns : 0;
	atomic_store(&s->mig_phase, MIG_POSTCOPY);
	pthread_cond_broadcast(&s->mig_cond);
	pthread_mutex_unlock(&s->mig_lock);
}

static void *incoming_wait(void *arg)
{
	struct server *s = arg;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	int r = fl_migrate_dest_wait(s->mig_dst);
	char why[256];

	fl_migrate_dest_stats(s->mig_dst, &st);
	if (r) {
		snprintf(why, sizeof(why), "failed %s: %s",
			 atomic_load(&s->mig_phase) == MIG_POSTCOPY
				 ? "after its switchover (the pages that did not arrive are poisoned)"
				 : "before its switchover",
			 r == -ETIMEDOUT && st.state == FL_MIGRATE_STATE_FAILED && atomic_load(&s->mig_phase) == MIG_POSTCOPY
				 ? "no reconnection within --migrate-recovery-ms (or the source silent)"
				 : mig_strerror(r));
		incoming_die(why);
	}
	/* Every page is here and the userfaultfd is gone: a SIGBUS from now
	 * on is not the migration's. */
	signal(SIGBUS, SIG_DFL);
	pthread_mutex_lock(&s->mig_lock);
	s->mig_total_ns = st.total_ns;
	s->mig_recoveries = st.recoveries;
	atomic_store(&s->mig_phase, MIG_DONE);
	pthread_mutex_unlock(&s->mig_lock);
	printf("kv-server: migration done (%s): downtime_us %llu total_ms %llu rounds %u pages_received %llu "
	       "zero_pages %llu requests %llu request_p50_us %llu request_p99_us %llu request_max_us %llu "
	       "recoveries %u recovery_ms %llu\n",
	       mode_name[s->mig_mode], (unsigned long long)(s->mig_downtime_ns / 1000),
	       (unsigned long long)(st.total_ns / 1000000), s->mig_rounds, (unsigned long long)st.pages_received,
	       (unsigned long long)st.zero_pages, (unsigned long long)st.requests,
	       (unsigned long long)(st.request_p50_ns / 1000), (unsigned long long)(st.request_p99_ns / 1000),
	       (unsigned long long)(st.request_max_ns / 1000), st.recoveries,
	       (unsigned long long)(st.recovery_ns / 1000000));
	fflush(stdout);
	close(s->mig_lfd);
	s->mig_lfd = -1;
	/* With a control socket the destination stays attached, so that
	 * status reports the migration that brought this server here, until
	 * a migration from here replaces it (start_migration()). */
	if (!s->ctl) {
		struct fl_migrate_dest *d;

		pthread_mutex_lock(&s->mig_lock);
		d = s->mig_dst;
		s->mig_dst = NULL;
		pthread_mutex_unlock(&s->mig_lock);
		fl_migrate_dest_free(d);
		close(s->mig_fds[0]);
		close(s->mig_fds[1]);
	}
	r = track_start(s);
	if (r)
		fprintf(stderr, "kv-server: fl_watch_new: %s (saves are full ones)\n", strerror(-r));
	return NULL;
}

/* --incoming: receive the arena; returns when this server may serve. */
static int incoming(struct server *s, int port)
{
	char name[INET_ADDRSTRLEN], at[INET_ADDRSTRLEN + 8];
	pthread_t th;
	int r;

	inet_ntop(AF_INET, &s->listen_addr.sin_addr, name, sizeof(name));
	snprintf(at, sizeof(at), "%s:%d", name, port);
	/* Kept open after the source's first pair: its reconnections after a
	 * cut arrive here (dst_reconnect()). */
	r = fl_migrate_listen(at, &s->mig_lfd, NULL);
	if (!r) {
		printf("kv-server: waiting for a migration on %s\n", at);
		fflush(stdout);
		r = fl_migrate_accept(s->mig_lfd, 0, &s->mig_fds[0], &s->mig_fds[1]);
	}
	if (r) {
		fprintf(stderr, "kv-server: --incoming %d: %s\n", port, strerror(-r));
		return r;
	}
	signal(SIGBUS, on_sigbus);
	r = fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts),
		.bulk_fd = s->mig_fds[0], .urgent_fd = s->mig_fds[1],
		.resume = dest_resume, .resume_ctx = s,
		.log = mig_log,
		.tls = s->tls, .psk_identity = s->psk_identity,
		.psk_key_hex = s->tls == FL_TLS_PSK ? s->psk_key_hex : NULL,
		.cert_file = s->cert_file, .key_file = s->key_file, .ca_file = s->ca_file,
		.reconnect = dst_reconnect, .reconnect_ctx = s,
		.recovery_ms = s->recovery_ms }, &s->mig_dst);
	if (!r && s->ctl)
		fl_migrate_ctl_set_dest(s->ctl, s->mig_dst);
	if (!r)
		r = fl_migrate_dest_start(s->mig_dst);
	if (!r)
		r = -pthread_create(&th, NULL, incoming_wait, s);
	if (r) {
		fprintf(stderr, "kv-server: incoming migration: %s\n", strerror(-r));
		return r;
	}
	pthread_detach(th);
	/* A failure exits the process from incoming_wait(). */
	pthread_mutex_lock(&s->mig_lock);
	while (atomic_load(&s->mig_phase) != MIG_POSTCOPY && atomic_load(&s->mig_phase) != MIG_DONE)
		pthread_cond_wait(&s->mig_cond, &s->mig_lock);
	pthread_mutex_unlock(&s->mig_lock);
	return 0;
}

/* ---- requests ---------------------------------------------------------------- */

/* One request; *ret_launch: launch_migration() once the reply is sent. */
static void handle(struct server *s, char *line, char *reply, size_t len, bool *ret_launch)
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
	} else if (!strcmp(cmd, "MIGRATE")) {
		enum fl_migrate_mode m = FL_MIGRATE_HYBRID;

		if (k && !strcmp(k, "precopy"))
			m = FL_MIGRATE_PRECOPY;
		else if (k && !strcmp(k, "postcopy"))
			m = FL_MIGRATE_POSTCOPY;
		if (k && m == FL_MIGRATE_HYBRID && strcmp(k, "hybrid"))
			snprintf(reply, len, "-ERR the mode is precopy, postcopy or hybrid\n");
		else
			*ret_launch = !start_migration(s, m, NULL, reply, len);
	} else if (!strcmp(cmd, "MIGRATION")) {
		migration_reply(s, reply, len);
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

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct server *s = c->s;
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
			bool launch = false;

			handle(s, line, reply, sizeof(reply), &launch);
			ssize_t w = write(c->fd, reply, strlen(reply));

			if (launch)
				launch_migration(s);
			if (w < 0)
				goto out;
		}
		if (have == sizeof(buf) - 1)
			break;	/* a line too long: drop the client */
	}
out:
	/* Under the list's lock: cut_clients() never shuts down a number
	 * that was closed and given to another file meanwhile. */
	pthread_mutex_lock(&s->conns_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	pthread_mutex_unlock(&s->conns_lock);
	free(c);
	return NULL;
}

static void accept_client(struct server *s, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct conn *c;
	pthread_t th;

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	pthread_mutex_lock(&s->conns_lock);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	pthread_mutex_unlock(&s->conns_lock);
	if (pthread_create(&th, NULL, conn_thread, c)) {
		pthread_mutex_lock(&s->conns_lock);
		s->conns = c->next;
		if (c->next)
			c->next->prev = NULL;
		pthread_mutex_unlock(&s->conns_lock);
		close(fd);
		free(c);
		return;
	}
	pthread_detach(th);
}

/*
 * The source after the switchover: every client connection ends without
 * another reply. Shut down, not closed: a thread waiting for the lock
 * still owns its descriptor, and finds the connection gone if it ever
 * gets to answer.
 */
static void cut_clients(struct server *s)
{
	pthread_mutex_lock(&s->conns_lock);
	for (struct conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->conns_lock);
}

/* Accept clients until this server has moved away; then its exit status. */
static int serve(struct server *s, int lfd, int sig_fd)
{
	int code;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = lfd, .events = POLLIN },
			{ .fd = s->wake_fd, .events = POLLIN },
			{ .fd = sig_fd, .events = POLLIN },
		};

		/* While paused for a switchover, look every millisecond for the
		 * destination's word that it runs: until then no client is
		 * answered, here or there. */
		if (poll(p, 3, atomic_load(&s->mig_paused) ? 1 : -1) < 0 && errno != EINTR)
			return perror("poll"), 1;
		if (p[1].revents & POLLIN) {
			uint64_t v;

			(void)!read(s->wake_fd, &v, sizeof(v));
		}
		if (p[2].revents & POLLIN) {
			struct signalfd_siginfo si;
			char reply[256];

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				bool launch = !start_migration(s, FL_MIGRATE_HYBRID, NULL, reply, sizeof(reply));

				fprintf(stderr, "kv-server: SIGUSR2: %s", reply);
				if (launch)
					launch_migration(s);
			}
		}
		if (moved_away(s))
			break;
		if (p[0].revents & POLLIN)
			accept_client(s, lfd);
	}
	/* New connections are refused from here: clients go to the
	 * destination. */
	close(lfd);
	cut_clients(s);
	pthread_mutex_lock(&s->mig_lock);
	while (!s->mig_finished)
		pthread_cond_wait(&s->mig_cond, &s->mig_lock);
	code = s->mig_exit;
	pthread_mutex_unlock(&s->mig_lock);
	fflush(stdout);
	return code;
}

/*
 * A file holding a secret (a PSK, a private key) must be readable by its
 * owner only, as ssh insists for its keys: refused otherwise, with how to
 * fix it. 0, or -1 after saying why.
 */
static int private_file(const char *path, const char *opt)
{
	struct stat st;

	if (stat(path, &st)) {
		fprintf(stderr, "kv-server: %s %s: %s\n", opt, path, strerror(errno));
		return -1;
	}
	if (st.st_mode & 077) {
		fprintf(stderr, "kv-server: %s %s: permissions %04o are too open: the file holds a secret and must "
				"not be accessible by group or others (chmod 600 %s)\n", opt, path,
			(unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

/* --migrate-psk IDENTITY:KEYFILE: the key file holds the key in hex. */
static int read_psk(struct server *s, const char *arg)
{
	const char *colon = strchr(arg, ':'), *path;
	char id[128];
	size_t n = 0;
	FILE *f;

	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(id) || !colon[1]) {
		fprintf(stderr, "kv-server: --migrate-psk wants IDENTITY:KEYFILE, not '%s'\n", arg);
		return -1;
	}
	memcpy(id, arg, (size_t)(colon - arg));
	id[colon - arg] = '\0';
	path = colon + 1;
	if (private_file(path, "--migrate-psk"))
		return -1;
	f = fopen(path, "re");
	if (f) {
		n = fread(s->psk_key_hex, 1, sizeof(s->psk_key_hex) - 1, f);
		fclose(f);
	}
	while (n && strchr(" \t\r\n", s->psk_key_hex[n - 1]))
		n--;
	s->psk_key_hex[n] = '\0';
	if (!n || n % 2 || n == sizeof(s->psk_key_hex) - 1 || strspn(s->psk_key_hex, "0123456789abcdefABCDEF") != n) {
		fprintf(stderr, "kv-server: --migrate-psk %s: the file must hold the key in hex (an even number of "
				"hex digits, e.g. from 'openssl rand -hex 32')\n", path);
		return -1;
	}
	s->psk_identity = strdup(id);
	s->tls = FL_TLS_PSK;
	return s->psk_identity ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: kv-server [--listen ADDR] [--port N] [--arena SIZE] [--dir DIR] [--load IMAGE] [--fork-save]\n"
		"                 [--track auto|async|sync|none] [--prefill N] [--save-nice N]\n"
		"                 [--migrate-to HOST:PORT] [--migrate-no-push] [MIGRATION OPTIONS]\n"
		"       kv-server --incoming PORT [--listen ADDR] [--port N] [--dir DIR] [--track auto|async|sync|none]\n"
		"                 [--migrate-to HOST:PORT] [--migrate-no-push] [MIGRATION OPTIONS]\n"
		"  MIGRATION OPTIONS: [--control PATH] [--migrate-recovery-ms N]\n"
		"                 [--migrate-psk IDENTITY:KEYFILE | --migrate-cert CERT --migrate-key KEY --migrate-ca CA]\n"
		"  SIZE: bytes, with an optional K, M or G suffix (default 256M)\n"
		"  --listen ADDR: the IPv4 address for clients (and --incoming), default 127.0.0.1\n"
		"  --migrate-to HOST:PORT: where MIGRATE [precopy|postcopy|hybrid] or SIGUSR2 moves this server\n"
		"  --incoming PORT: receive a migration on ADDR:PORT, then serve on ADDR:--port. The arena is\n"
		"    mapped by the library at the source's address, so this server allocates nothing before the\n"
		"    layout arrives (no --arena, --load or --prefill: the data comes from the source)\n"
		"  --control PATH: a control socket for 'faultline migrate start|status|watch|cancel --control PATH'\n"
		"  --migrate-recovery-ms N: after a cut past the switchover, reconnect for up to N ms (default 30000)\n"
		"  --migrate-psk IDENTITY:KEYFILE: TLS with a pre-shared key, in hex in KEYFILE (mode 0600)\n"
		"  --migrate-cert CERT --migrate-key KEY --migrate-ca CA: TLS with X.509 (mutual when both ends\n"
		"    have --migrate-ca); the same kind of TLS on both ends, or the migration is refused\n");
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

/* The stripe locks, for s->nslots. */
static int init_table(struct server *s)
{
	/* Stripes of at least 64 slots (a probe at half load never runs
	 * through MAX_HELD of them), at most 4096 stripes. */
	s->stripe_slots = s->nslots / 4096 > 64 ? s->nslots / 4096 : 64;
	s->nstripes = (s->nslots + s->stripe_slots - 1) / s->stripe_slots;
	s->stripe = calloc(s->nstripes, sizeof(*s->stripe));
	if (!s->stripe)
		return -ENOMEM;
	for (uint64_t i = 0; i < s->nstripes; i++)
		pthread_mutex_init(&s->stripe[i], NULL);
	return 0;
}

/* The arena, from --load or --prefill, and its tracking. */
static int local_arena(struct server *s, size_t arena, const char *load, unsigned long long fill)
{
	int ret;

	s->arena_len = arena;
	s->nslots = arena / sizeof(struct slot);
	s->arena = mmap(ARENA_HINT, arena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->arena == MAP_FAILED)
		return perror("mmap"), -1;
	if (init_table(s))
		return perror("kv-server"), -1;
	if (load) {
		struct fl_image *img;
		struct fl_image_region r = { .sz = sizeof(r) };
		ret = fl_image_open(load, 0, &img);
		if (!ret)
			ret = fl_image_region(img, 0, &r);
		if (!ret && r.length != arena)
			ret = -EINVAL;
		if (!ret)
			ret = fl_image_restore(img, 0, s->arena);
		if (ret) {
			fprintf(stderr, "kv-server: loading %s: %s\n", load, strerror(-ret));
			return -1;
		}
		fl_image_close(img);
		for (uint64_t i = 0; i < s->nslots; i++)
			s->keys += s->arena[i].hash != 0;
		snprintf(s->last_path, sizeof(s->last_path), "%s", load);
	}
	if (fill && prefill(s, fill)) {
		fprintf(stderr, "kv-server: --prefill %llu: the arena holds %llu slots\n", fill,
			(unsigned long long)s->nslots);
		return -1;
	}
	/* From now on, what changes is tracked: saves after the first can be
	 * incremental. */
	ret = track_start(s);
	if (ret) {
		fprintf(stderr, "kv-server: fl_watch_new: %s\n", strerror(-ret));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct server s = { .dir = "/var/tmp", .wake_fd = -1, .mig_lfd = -1, .src_fds = { -1, -1 },
				   .recovery_ms = 30000 };
	const char *load = NULL, *track = "auto", *listen_on = "127.0.0.1", *psk = NULL, *control = NULL;
	int code;
	unsigned long long fill = 0;
	size_t arena = 0;
	int port = 0, incoming_port = 0, lfd, sig_fd, one = 1;
	socklen_t sl = sizeof(s.listen_addr);
	char name[INET_ADDRSTRLEN];
	sigset_t usr2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen_on = argv[++i];
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
		else if (!strcmp(argv[i], "--migrate-to") && i + 1 < argc)
			s.migrate_to = argv[++i];
		else if (!strcmp(argv[i], "--migrate-no-push"))
			s.migrate_no_push = true;
		else if (!strcmp(argv[i], "--incoming") && i + 1 < argc)
			incoming_port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--migrate-psk") && i + 1 < argc)
			psk = argv[++i];
		else if (!strcmp(argv[i], "--migrate-cert") && i + 1 < argc)
			s.cert_file = argv[++i];
		else if (!strcmp(argv[i], "--migrate-key") && i + 1 < argc)
			s.key_file = argv[++i];
		else if (!strcmp(argv[i], "--migrate-ca") && i + 1 < argc)
			s.ca_file = argv[++i];
		else if (!strcmp(argv[i], "--migrate-recovery-ms") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);

			if (*end || !v || v > 3600000) {
				fprintf(stderr, "kv-server: --migrate-recovery-ms wants 1 to 3600000, not '%s'\n", argv[i]);
				return 2;
			}
			s.recovery_ms = (unsigned)v;
		} else if (!strcmp(argv[i], "--control") && i + 1 < argc)
			control = argv[++i];
		else
			return usage();
	}
	if (psk && (s.cert_file || s.key_file || s.ca_file)) {
		fprintf(stderr, "kv-server: --migrate-psk or --migrate-cert/--migrate-key/--migrate-ca, not both\n");
		return 2;
	}
	if (psk && read_psk(&s, psk))
		return 2;
	if (!s.cert_file != !s.key_file) {
		fprintf(stderr, "kv-server: --migrate-cert and --migrate-key go together\n");
		return 2;
	}
	if (incoming_port && s.ca_file && !s.cert_file) {
		fprintf(stderr, "kv-server: --incoming with --migrate-ca needs its own --migrate-cert and --migrate-key "
				"(the destination is the TLS server)\n");
		return 2;
	}
	if (s.key_file && private_file(s.key_file, "--migrate-key"))
		return 2;
	if (s.cert_file || s.ca_file)
		s.tls = FL_TLS_X509;
	s.incoming = incoming_port != 0;
	s.listen_addr.sin_family = AF_INET;
	if (inet_pton(AF_INET, listen_on, &s.listen_addr.sin_addr) != 1) {
		fprintf(stderr, "kv-server: --listen wants an IPv4 address, not '%s'\n", listen_on);
		return 2;
	}
	if (s.migrate_to && resolve(s.migrate_to, &(struct sockaddr_in){ 0 })) {
		fprintf(stderr, "kv-server: --migrate-to wants HOST:PORT, not '%s'\n", s.migrate_to);
		return 2;
	}
	if (incoming_port && (arena || load || fill || s.fork_save)) {
		fprintf(stderr, "kv-server: --incoming takes its arena and keys from the source: "
				"no --arena, --load, --prefill or --fork-save\n");
		return 2;
	}
	if (incoming_port < 0 || incoming_port > 65535 || port < 0 || port > 65535)
		return usage();
	if (!arena)
		arena = 256u << 20;
	s.track = strcmp(track, "none") != 0 && !s.fork_save;
	if (!strcmp(track, "async"))
		s.track_backend = FL_WATCH_ASYNC;
	else if (!strcmp(track, "sync"))
		s.track_backend = FL_WATCH_SYNC;
	else if (strcmp(track, "auto") && strcmp(track, "none"))
		return usage();
	signal(SIGPIPE, SIG_IGN);
	/* SIGUSR2 starts a migration: read from a signalfd by the accept
	 * loop, so blocked in every thread (they inherit the mask). */
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	sig_fd = signalfd(-1, &usr2, SFD_CLOEXEC);
	s.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sig_fd < 0 || s.wake_fd < 0)
		return perror("kv-server"), 1;
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* Writer preference: a pending pause is not starved by a stream of requests. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s.quiesce, &ra);
	pthread_mutex_init(&s.save_lock, NULL);
	pthread_mutex_init(&s.conns_lock, NULL);
	pthread_mutex_init(&s.mig_lock, NULL);
	pthread_cond_init(&s.mig_cond, NULL);

	if (!incoming_port && local_arena(&s, arena, load, fill))
		return 1;
	/* Bound now, listening later for --incoming (from the switchover):
	 * a port in use fails here, before anything moves. */
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	s.listen_addr.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&s.listen_addr, sizeof(s.listen_addr)) ||
	    (!incoming_port && listen(lfd, 128)) || getsockname(lfd, (struct sockaddr *)&s.listen_addr, &sl))
		return perror("listen"), 1;
	s.client_lfd = lfd;
	inet_ntop(AF_INET, &s.listen_addr.sin_addr, name, sizeof(name));
	if (control) {
		int r = fl_migrate_ctl_new(&(struct fl_migrate_ctl_opts){
			.sz = sizeof(struct fl_migrate_ctl_opts), .path = control,
			.start = ctl_start, .start_ctx = &s, .log = mig_log }, &s.ctl);

		if (r) {
			fprintf(stderr, "kv-server: --control %s: %s\n", control, strerror(-r));
			return 1;
		}
	}
	if (incoming_port) {
		if (incoming(&s, incoming_port))
			return 1;
		printf("kv-server: listening on %s:%d, %zu MiB arena (%llu slots, %llu keys) arriving from the source "
		       "(%s), saves in %s, tracking once the migration is done\n",
		       name, ntohs(s.listen_addr.sin_port), s.arena_len >> 20, (unsigned long long)s.nslots,
		       (unsigned long long)atomic_load(&s.keys), mode_name[s.mig_mode], s.dir);
	} else {
		static const char *const be_name[] = { "auto", "async", "sync", "mprotect" };
		printf("kv-server: listening on %s:%d, %zu MiB arena (%llu slots), %s saves in %s, tracking %s\n",
		       name, ntohs(s.listen_addr.sin_port), arena >> 20, (unsigned long long)s.nslots,
		       s.fork_save ? "fork()" : "faultline live-snapshot", s.dir,
		       s.watch ? be_name[fl_watch_backend(s.watch)] : "none");
	}
	fflush(stdout);
	code = serve(&s, lfd, sig_fd);
	if (s.ctl) {
		/* Detached before anything is freed (fl_migrate_ctl_set_source(3)). */
		fl_migrate_ctl_set_source(s.ctl, NULL);
		fl_migrate_ctl_free(s.ctl);
		fl_migrate_source_free(s.mig_src_ended);
	}
	return code;
}
