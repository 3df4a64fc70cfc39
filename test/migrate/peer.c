// SPDX-License-Identifier: LGPL-2.1-or-later
/* A source process with 4 writers and a checking destination (peer.h). */
#include "peer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

static unsigned mig_nranges(const struct mig_case *c)
{
	return c->mem == MIG_MIXED ? 3 : 1;
}

size_t mig_bytes(const struct mig_case *c)
{
	return mig_nranges(c) * c->len;
}

static enum fl_mem_type range_mem(const struct mig_case *c, unsigned i)
{
	return c->mem == MIG_MIXED ? (enum fl_mem_type)i : (enum fl_mem_type)c->mem;
}

static size_t mem_page(enum fl_mem_type mem)
{
	return mem == FL_MEM_HUGETLB ? (2u << 20) : 4096u;
}

static uint64_t mig_pages(const struct mig_case *c)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < mig_nranges(c); i++)
		n += c->len / mem_page(range_mem(c, i));
	return n;
}

void mig_require(const struct mig_case *c)
{
	if (c->mem == FL_MEM_SHMEM || c->mem == MIG_MIXED)
		t_require_needs(T_MISSING_SHMEM);
	if (c->mem == FL_MEM_HUGETLB || c->mem == MIG_MIXED) {
		t_require_needs(T_MISSING_HUGETLB);
		/* Both sides' copies. */
		t_need_huge(2 * c->len);
	}
}

/* A block's counter is in its first and last words; between them the
 * writer touches a byte, so a copy can catch it half done. */
void mig_block_write(uint8_t *b)
{
	_Atomic uint64_t *head = (_Atomic uint64_t *)(void *)b;
	_Atomic uint64_t *tail = (_Atomic uint64_t *)(void *)(b + MIG_BLK - 8);
	uint64_t v = atomic_load(head) + 1;

	atomic_store(head, v);
	((volatile uint8_t *)b)[64 + v % 1024] = (uint8_t)v;
	atomic_store(tail, v);
}

/* Written blocks: the first three quarters, not every 4th group of 4; the
 * last quarter stays zero (elided on the wire). Writer t owns the blocks
 * b % MIG_WRITERS == t. */
static bool block_hot(size_t b, size_t nblk)
{
	return b < nblk * 3 / 4 && (b / 4) % 4 != 3;
}

/* ---- the source process ------------------------------------------------ */

struct world {
	uint8_t *mem;
	size_t nblk;
	pthread_rwlock_t lock;
	pthread_t th[MIG_WRITERS];
	_Atomic bool stop;
	_Atomic uint64_t ops;
	uint64_t *hashes;
	bool paused;
	uint64_t t_run, t_last_round;
	struct mig_report rep;
	bool shrinking;
	_Atomic size_t limit;		/* shrinking: the writers' blocks are [0, limit) */
	bool cancel_on_round;
	struct fl_migrate_source *src;
};

struct writer_arg {
	struct world *w;
	unsigned id;
};

static void *writer(void *arg)
{
	struct world *w = ((struct writer_arg *)arg)->w;
	unsigned id = ((struct writer_arg *)arg)->id;
	uint64_t x = (uint64_t)(uintptr_t)pthread_self() | 1;

	while (!atomic_load(&w->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t b = (x % (w->nblk / MIG_WRITERS)) * MIG_WRITERS + id;

		if (!w->shrinking && !block_hot(b, w->nblk))
			continue;
		pthread_rwlock_rdlock(&w->lock);
		/* Under the lock: once the set shrank, no write outside it.
		 * Never its last block, which only the round's end writes:
		 * then a round's set is exactly [0, limit). */
		if (!w->shrinking || b + 1 < atomic_load(&w->limit))
			mig_block_write(w->mem + b * MIG_BLK);
		pthread_rwlock_unlock(&w->lock);
		if ((atomic_fetch_add(&w->ops, 1) & 15) == 0)
			sched_yield();
	}
	return NULL;
}

static int quiesce(enum fl_migrate_quiesce action, void *ctx)
{
	struct world *w = ctx;

	if (action == FL_MIGRATE_PAUSE) {
		/* Writers hold the lock shared for each block: once we hold it
		 * exclusive no write is half done, and none starts. */
		pthread_rwlock_wrlock(&w->lock);
		w->rep.pause_ns = t_now_ns() - w->t_run;
		w->paused = true;
		for (size_t b = 0; b < w->nblk; b++)
			w->hashes[b] = XXH3_64bits(w->mem + b * MIG_BLK, MIG_BLK);
	} else {
		w->paused = false;
		pthread_rwlock_unlock(&w->lock);
	}
	return 0;
}

static void src_log(enum fl_log_level level, const char *msg, void *ctx)
{
	struct world *w = ctx;

	/* The log is where the source says a round ended: the one hook that
	 * lets a case cancel before switchover without a race. */
	if (w->cancel_on_round && strstr(msg, "round 1 sent"))
		T_OK(fl_migrate_source_cancel(w->src));
	if (strstr(msg, "sent") && strstr(msg, "round ")) {
		uint64_t now = t_now_ns();

		if (now - w->t_last_round > w->rep.longest_round_ns)
			w->rep.longest_round_ns = now - w->t_last_round;
		w->t_last_round = now;
		if (w->shrinking && atomic_load(&w->limit) > 1) {
			/* Before the source reads what this round's sending saw
			 * written: all of the set, one block smaller. */
			size_t limit = atomic_load(&w->limit) - 1;

			pthread_rwlock_wrlock(&w->lock);
			atomic_store(&w->limit, limit);
			pthread_rwlock_unlock(&w->lock);
			for (size_t b = 0; b < limit; b++) {
				pthread_rwlock_rdlock(&w->lock);
				mig_block_write(w->mem + b * MIG_BLK);
				pthread_rwlock_unlock(&w->lock);
			}
		}
	}
	if (strstr(msg, "precopy time limit"))
		w->rep.time_limit = true;
	if (level <= FL_LOG_WARN || getenv("MIG_DEBUG"))
		t_log("source: %s", msg);
}

void *mig_map_at(uint64_t addr, enum fl_mem_type mem, size_t len)
{
	void *p;
	int fd;

	if (mem == FL_MEM_ANON) {
		p = mmap((void *)(uintptr_t)addr, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	} else {
		fd = memfd_create("fl-migrate-test", MFD_CLOEXEC | (mem == FL_MEM_HUGETLB ? MFD_HUGETLB : 0));
		T_ASSERT(fd >= 0, "memfd_create: %s", strerror(errno));
		T_ASSERT(ftruncate(fd, (off_t)len) == 0, "ftruncate: %s", strerror(errno));
		p = mmap((void *)(uintptr_t)addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE,
			 fd, 0);
		close(fd);
	}
	T_ASSERT(p == (void *)(uintptr_t)addr, "mmap at 0x%llx: %s", (unsigned long long)addr, strerror(errno));
	return p;
}

void mig_listen(const char *ip, int *ret_fd, int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	T_ASSERT(fd >= 0);
	T_ASSERT(inet_pton(AF_INET, ip, &a.sin_addr) == 1, "address %s", ip);
	T_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 4) == 0, "listen on %s: %s", ip,
		 strerror(errno));
	T_ASSERT(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	*ret_fd = fd;
	*ret_port = ntohs(a.sin_port);
}

static int mig_connect(const char *ip, int port, char role)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	T_ASSERT(fd >= 0);
	T_ASSERT(inet_pton(AF_INET, ip, &a.sin_addr) == 1, "address %s", ip);
	T_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to %s:%d: %s", ip, port,
		 strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	T_ASSERT(write(fd, &role, 1) == 1);
	return fd;
}

/* Each of the source's two connections names its role in one byte. */
static void mig_accept_pair(int lfd, int *ret_bulk, int *ret_urgent)
{
	for (int i = 0; i < 2; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), one = 1;
		char role = 0;

		T_ASSERT(fd >= 0, "accept: %s", strerror(errno));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		T_ASSERT(read(fd, &role, 1) == 1 && (role == 'B' || role == 'U'));
		*(role == 'B' ? ret_bulk : ret_urgent) = fd;
	}
}

/* The source process: never returns (exits 0 when all went as c says);
 * writes its struct mig_report to report_fd on success. */
__attribute__((noreturn)) static void mig_source(const struct mig_case *c, const char *ip, int port, int report_fd)
{
	struct world w = { .nblk = mig_bytes(c) / MIG_BLK, .shrinking = c->shrinking };
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_range range[3];
	struct writer_arg wa[MIG_WRITERS];
	int bulk, urgent, r;

	/* Mixed: three adjacent mappings, one memory to the writers. */
	for (unsigned i = 0; i < mig_nranges(c); i++)
		range[i] = (struct fl_migrate_range){ mig_map_at(c->addr + i * c->len, range_mem(c, i), c->len), c->len,
						      range_mem(c, i) };
	w.mem = range[0].addr;
	w.hashes = calloc(w.nblk, sizeof(uint64_t));
	T_ASSERT(w.hashes != NULL);
	atomic_store(&w.limit, w.nblk / 4);
	pthread_rwlock_init(&w.lock, NULL);
	for (size_t b = 0; b < w.nblk; b++)
		if (block_hot(b, w.nblk))
			mig_block_write(w.mem + b * MIG_BLK);
	for (unsigned i = 0; i < MIG_WRITERS; i++) {
		wa[i] = (struct writer_arg){ &w, i };
		T_ASSERT(pthread_create(&w.th[i], NULL, writer, &wa[i]) == 0);
	}
	bulk = mig_connect(ip, port, 'B');
	urgent = mig_connect(ip, port, 'U');
	w.cancel_on_round = c->cancel;
	T_OK(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = range, .nranges = mig_nranges(c),
		.bulk_fd = bulk, .urgent_fd = urgent, .mode = c->mode, .flags = c->src_flags,
		.max_rounds = c->max_rounds, .max_precopy_ms = c->max_precopy_ms,
		.quiesce = quiesce, .quiesce_ctx = &w, .blob = w.hashes, .blob_len = w.nblk * sizeof(uint64_t),
		.log = src_log, .log_ctx = &w }, &w.src));
	w.t_run = w.t_last_round = t_now_ns();
	r = fl_migrate_source_run(w.src);
	T_OK(fl_migrate_source_stats(w.src, &st));
	if (c->expect) {
		uint64_t ops;

		T_ASSERT(r == c->expect, "run: %d, expected %d", r, c->expect);
		T_ASSERT(!w.paused, "the migration failed before switchover, yet paused");
		T_ASSERT_EQ(st.state, c->expect == -ECANCELED ? FL_MIGRATE_STATE_CANCELLED : FL_MIGRATE_STATE_FAILED);
		T_ASSERT_EQ(st.error, c->expect == -ECANCELED ? 0 : c->expect);
		/* Intact and writable: the writers go on, every block whole. */
		ops = atomic_load(&w.ops);
		T_ASSERT(T_WAIT_FOR(atomic_load(&w.ops) > ops + 10000, 10000), "writers stalled");
		atomic_store(&w.stop, true);
		for (unsigned i = 0; i < MIG_WRITERS; i++)
			pthread_join(w.th[i], NULL);
		for (size_t b = 0; b < w.nblk; b++) {
			const uint64_t *q = (const uint64_t *)(const void *)(w.mem + b * MIG_BLK);

			T_ASSERT(q[0] == q[MIG_BLK / 8 - 1], "block %zu torn at the source", b);
			T_ASSERT(block_hot(b, w.nblk) ? q[0] > 0 : q[0] == 0, "block %zu lost its counter", b);
		}
		memset(w.mem, 0x5a, w.nblk * MIG_BLK);
		T_ASSERT(w.mem[w.nblk * MIG_BLK - 1] == 0x5a);
		fl_migrate_source_free(w.src);
		_exit(0);
	}
	T_ASSERT(r == 0, "run: %d (%s)", r, strerror(-r));
	T_ASSERT(w.paused);
	T_ASSERT_EQ(st.state, FL_MIGRATE_STATE_DONE);
	T_ASSERT_EQ(st.pages_total, mig_pages(c));
	T_ASSERT_EQ(st.pages_remaining, 0);
	T_ASSERT_EQ(st.error, 0);
	T_ASSERT(st.downtime_ns > 0 && st.downtime_ns <= st.total_ns, "downtime %llu of %llu ns",
		 (unsigned long long)st.downtime_ns, (unsigned long long)st.total_ns);
	T_ASSERT(st.bytes_sent > 0 && st.zero_pages > 0);
	if (c->mode == FL_MIGRATE_POSTCOPY) {
		T_ASSERT_EQ(st.rounds, 0);
	} else {
		T_ASSERT(st.rounds >= 1);
		/* Round 1 sends every page. */
		T_ASSERT_EQ(st.pages_per_round[0], mig_pages(c));
	}
	if (c->src_flags & FL_MIGRATE_NO_PUSH)
		T_ASSERT_EQ(st.pushed, 0);
	w.rep.rounds = st.rounds;
	fl_migrate_source_free(w.src);
	if (report_fd >= 0)
		T_ASSERT(write(report_fd, &w.rep, sizeof(w.rep)) == (ssize_t)sizeof(w.rep));
	_exit(0);
}

/* ---- the destination --------------------------------------------------- */

struct dst_ctx {
	const struct mig_case *c;
	struct fl_migrate_dest *dst;	/* set before start: resume reads the ranges */
	struct fl_migrate_placed placed[3];
	struct fl_migrate_range seen[3];	/* what place() was told */
	unsigned placed_calls;
	size_t nblk;
	uint64_t *hashes;
	_Atomic bool resumed;
	pthread_t reader;
	bool reader_started;
	_Atomic uint64_t mismatched, torn;
};

static uint8_t *blk_addr(struct dst_ctx *d, size_t b)
{
	size_t off = b * MIG_BLK;

	return (uint8_t *)d->placed[off / d->c->len].addr + off % d->c->len;
}

static void check_blocks(struct dst_ctx *d, bool reverse)
{
	for (size_t i = 0; i < d->nblk; i++) {
		size_t b = reverse ? d->nblk - 1 - i : i;
		const uint8_t *p = blk_addr(d, b);
		const uint64_t *q = (const uint64_t *)(const void *)p;

		if (q[0] != q[MIG_BLK / 8 - 1])
			atomic_fetch_add(&d->torn, 1);
		if (XXH3_64bits(p, MIG_BLK) != d->hashes[b])
			atomic_fetch_add(&d->mismatched, 1);
	}
}

static void *reader(void *arg)
{
	/* The application at the destination: its first touches fault, the
	 * pages come over the urgent channel (or the push wins). */
	check_blocks(arg, true);
	return NULL;
}

static void *place(void *ctx, unsigned index, const struct fl_migrate_range *source_range)
{
	struct dst_ctx *d = ctx;
	uint8_t *moved = (uint8_t *)source_range->addr + MIG_RELOCATE;

	T_ASSERT(index < 3);
	d->seen[index] = *source_range;
	d->placed_calls++;
	switch (d->c->place) {
	case PLACE_ANYWHERE:
		return NULL;
	case PLACE_MISALIGNED:
		return index == 2 ? moved + 4096 : moved;
	default:
		return moved;
	}
}

static void on_resume(const void *blob, size_t blob_len, void *ctx)
{
	struct dst_ctx *d = ctx;
	unsigned n = 0;

	T_ASSERT_EQ(blob_len, d->nblk * sizeof(uint64_t));
	memcpy(d->hashes, blob, blob_len);
	/* Documented: the ranges are known from here on, in this thread. */
	T_OK(fl_migrate_dest_ranges(d->dst, d->placed, 3, &n));
	T_ASSERT_EQ(n, mig_nranges(d->c));
	{
		/* A short array: what fits, and the count of all. */
		struct fl_migrate_placed one[2] = { 0 };

		n = 0;
		T_OK(fl_migrate_dest_ranges(d->dst, one, 1, &n));
		T_ASSERT_EQ(n, mig_nranges(d->c));
		T_ASSERT(one[0].addr == d->placed[0].addr && one[1].addr == NULL);
		T_OK(fl_migrate_dest_ranges(d->dst, NULL, 0, &n));
		T_ASSERT_EQ(n, mig_nranges(d->c));
	}
	if (!d->c->kill_source) {
		T_ASSERT(pthread_create(&d->reader, NULL, reader, d) == 0);
		d->reader_started = true;
	}
	atomic_store(&d->resumed, true);
}

static void dst_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level <= FL_LOG_WARN || getenv("MIG_DEBUG"))
		t_log("destination: %s", msg);
}

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_seen;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	bus_seen = 1;
	siglongjmp(bus_jmp, 1);
}

/* 1 when reading *addr raised SIGBUS, 0 when it returned *ret_value. */
int mig_read_or_sigbus(const volatile uint64_t *addr, uint64_t *ret_value)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO }, old;

	bus_seen = 0;
	sigemptyset(&sa.sa_mask);
	T_ASSERT(sigaction(SIGBUS, &sa, &old) == 0);
	if (!sigsetjmp(bus_jmp, 1))
		*ret_value = *addr;
	sigaction(SIGBUS, &old, NULL);
	return bus_seen;
}

/* Nothing of ours is mapped at [addr, addr + len). */
static bool unmapped(uint64_t addr, size_t len)
{
	void *p = mmap((void *)(uintptr_t)addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		       -1, 0);

	if (p == MAP_FAILED)
		return false;
	munmap(p, len);
	return p == (void *)(uintptr_t)addr;
}

static void check_placement(struct dst_ctx *d)
{
	const struct mig_case *c = d->c;

	for (unsigned i = 0; i < mig_nranges(c); i++) {
		const struct fl_migrate_placed *pl = &d->placed[i];
		uint64_t src = c->addr + i * c->len;

		T_ASSERT(pl->source_addr == (void *)(uintptr_t)src && pl->len == c->len && pl->mem == range_mem(c, i),
			 "range %u: source %p len %zu mem %d", i, pl->source_addr, pl->len, pl->mem);
		T_ASSERT((uintptr_t)pl->addr % mem_page(pl->mem) == 0, "range %u at %p", i, pl->addr);
		if (c->place == PLACE_SAME) {
			T_ASSERT(pl->addr == pl->source_addr);
			continue;
		}
		/* place() saw the source's range, and it is not mapped here. */
		T_ASSERT(d->seen[i].addr == pl->source_addr && d->seen[i].len == c->len &&
			 d->seen[i].mem == pl->mem, "place() was told range %u at %p", i, d->seen[i].addr);
		if (c->place == PLACE_RELOCATE)
			T_ASSERT(pl->addr == (uint8_t *)pl->source_addr + MIG_RELOCATE, "range %u at %p", i, pl->addr);
		T_ASSERT(pl->addr != pl->source_addr);
		T_ASSERT(unmapped(src, c->len), "range %u also mapped at the source's address", i);
	}
	if (c->place != PLACE_SAME)
		T_ASSERT_EQ(d->placed_calls, mig_nranges(c));
}

/*
 * The destination: receives on the accepted pair, checks everything c
 * promises, waits for the source process (pid) and returns T_PASS or
 * fails through T_ASSERT. The report, when rep is not NULL.
 */
static int mig_destination(const struct mig_case *c, int bulk, int urgent, pid_t pid, int report_fd,
			   struct mig_report *rep)
{
	struct dst_ctx d = { .c = c, .nblk = mig_bytes(c) / MIG_BLK };
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	uint8_t *blocker = NULL;
	int status, r;

	d.hashes = calloc(d.nblk, sizeof(uint64_t));
	T_ASSERT(d.hashes != NULL);
	if (c->addr_taken) {
		/* The source's address, taken here: the last page of range 0. */
		blocker = mmap((void *)(uintptr_t)(c->addr + c->len - 4096), 4096, PROT_READ,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		T_ASSERT(blocker == (void *)(uintptr_t)(c->addr + c->len - 4096));
	}
	if (c->place == PLACE_IN_USE) {
		/* One page in the middle of range 1's new address. */
		blocker = mmap((void *)(uintptr_t)(c->addr + c->len + MIG_RELOCATE + c->len / 2), 4096,
			       PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		T_ASSERT(blocker == (void *)(uintptr_t)(c->addr + c->len + MIG_RELOCATE + c->len / 2));
	}
	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = bulk, .urgent_fd = urgent,
		.resume = on_resume, .resume_ctx = &d, .timeout_ms = t_scaled_ms(20000), .log = dst_log,
		.place = c->place == PLACE_SAME ? NULL : place, .place_ctx = &d,
		.flags = c->move ? FL_MIGRATE_DEST_MOVE : 0 }, &d.dst));
	T_OK(fl_migrate_dest_start(d.dst));

	if (c->kill_source) {
		uint64_t v = 0;
		uint8_t *far;

		T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
		/* Served: a fault fetched over the urgent channel. */
		T_ASSERT_EQ(mig_read_or_sigbus((const volatile uint64_t *)(void *)blk_addr(&d, 0), &v), 0);
		T_ASSERT(XXH3_64bits(blk_addr(&d, 0), MIG_BLK) == d.hashes[0], "block 0 differs");
		T_ASSERT(v > 0);
		kill(pid, SIGKILL);
		T_OK(t_wait_pid(pid, 10000, &status));
		/* Blocks never asked for, in other pages: SIGBUS, never zeros. */
		for (size_t b = d.nblk / 2 + 1; b < d.nblk; b += d.nblk / 7) {
			far = blk_addr(&d, b);
			T_ASSERT(mig_read_or_sigbus((const volatile uint64_t *)(void *)far, &v) == 1,
				 "block %zu read as %llu instead of SIGBUS", b, (unsigned long long)v);
		}
		r = fl_migrate_dest_wait(d.dst);
		T_ASSERT(r < 0, "wait: %d after the source died", r);
		T_OK(fl_migrate_dest_stats(d.dst, &st));
		T_ASSERT_EQ(st.state, FL_MIGRATE_STATE_FAILED);
		T_ASSERT_EQ(st.error, r);
		T_ASSERT(st.pages_remaining > 0 && st.pages_remaining < st.pages_total, "%llu of %llu missing",
			 (unsigned long long)st.pages_remaining, (unsigned long long)st.pages_total);
		/* What did arrive stays. */
		T_ASSERT(XXH3_64bits(blk_addr(&d, 0), MIG_BLK) == d.hashes[0], "block 0 changed after the failure");
		fl_migrate_dest_free(d.dst);
		free(d.hashes);
		return T_PASS;
	}

	r = fl_migrate_dest_wait(d.dst);
	if (c->expect) {
		T_ASSERT(r == c->expect, "wait: %d, expected %d", r, c->expect);
		T_ASSERT(!atomic_load(&d.resumed));
		T_OK(fl_migrate_dest_stats(d.dst, &st));
		T_ASSERT_EQ(st.state, c->expect == -ECANCELED ? FL_MIGRATE_STATE_CANCELLED : FL_MIGRATE_STATE_FAILED);
		T_ASSERT_EQ(st.error, c->expect == -ECANCELED ? 0 : c->expect);
		T_ASSERT_EQ(fl_migrate_dest_ranges(d.dst, NULL, 0, &(unsigned){ 0 }), -EAGAIN);
		if (blocker)
			T_ASSERT(munmap(blocker, 4096) == 0);
		/* Nothing left mapped, at the new addresses or the old. (Only
		 * a placing case has new addresses: without one, the source's
		 * address + MIG_RELOCATE may be anybody's, e.g. ASan's heap at
		 * 0x600000000000.) */
		for (unsigned i = 0; i < mig_nranges(c); i++) {
			uint64_t src = c->addr + i * c->len;

			if (c->place != PLACE_SAME)
				T_ASSERT(unmapped(src + MIG_RELOCATE, c->len), "range %u left mapped at its new address",
					 i);
			T_ASSERT(unmapped(src, c->len), "range %u mapped at the source's address", i);
		}
	} else {
		T_ASSERT(r == 0, "wait: %d (%s)", r, strerror(-r));
		if (d.reader_started)
			pthread_join(d.reader, NULL);
		check_placement(&d);
		T_ASSERT(atomic_load(&d.torn) == 0, "%llu torn blocks seen by the application",
			 (unsigned long long)atomic_load(&d.torn));
		T_ASSERT(atomic_load(&d.mismatched) == 0, "%llu blocks differ from the pause instant",
			 (unsigned long long)atomic_load(&d.mismatched));
		/* Again, complete and with the uffd gone. */
		check_blocks(&d, false);
		T_ASSERT(atomic_load(&d.torn) == 0 && atomic_load(&d.mismatched) == 0);
		T_OK(fl_migrate_dest_stats(d.dst, &st));
		T_ASSERT(st.pages_received > 0 && st.zero_pages > 0);
		T_ASSERT_EQ(st.state, FL_MIGRATE_STATE_DONE);
		T_ASSERT_EQ(st.pages_total, mig_pages(c));
		T_ASSERT_EQ(st.pages_remaining, 0);
		if ((c->src_flags & FL_MIGRATE_NO_PUSH) && c->mode == FL_MIGRATE_HYBRID) {
			/* Only what was written after the last round. */
			T_ASSERT(st.requests < mig_pages(c));
		} else if (c->src_flags & FL_MIGRATE_NO_PUSH) {
			/* Every page came on request, and each was asked once. */
			T_ASSERT_EQ(st.requests, mig_pages(c));
			T_ASSERT(st.request_p50_ns > 0 && st.request_p50_ns <= st.request_p99_ns &&
				 st.request_p99_ns <= st.request_max_ns * 2);
		}
		/* UFFDIO_MOVE installs anonymous pages when asked and the
		 * kernel has it (not masked); never shmem or hugetlb pages. */
		if (c->move && (c->mem == FL_MEM_ANON || c->mem == MIG_MIXED)) {
			if (t_has(FL_FEATURE_BIT(FL_FEATURE_MOVE) | FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE)))
				T_ASSERT(st.pages_moved > 0, "UFFDIO_MOVE available, no page moved");
			else
				T_ASSERT_EQ(st.pages_moved, 0);
		} else {
			T_ASSERT_EQ(st.pages_moved, 0);
		}
		T_ASSERT(st.pages_moved <= st.pages_received);
		t_log("destination: %llu pages received, %llu moved, %llu requests",
		      (unsigned long long)st.pages_received, (unsigned long long)st.pages_moved,
		      (unsigned long long)st.requests);
		/* Writable, as the application's own memory. */
		for (unsigned i = 0; i < mig_nranges(c); i++)
			memset(d.placed[i].addr, 0x33, c->len);
	}
	T_OK(t_wait_pid(pid, 30000, &status));
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "source status 0x%x", status);
	if (rep && !c->expect) {
		T_ASSERT(read(report_fd, rep, sizeof(*rep)) == (ssize_t)sizeof(*rep), "no report from the source");
	}
	fl_migrate_dest_free(d.dst);
	free(d.hashes);
	return T_PASS;
}

int mig_run(const struct mig_case *c, const char *listen_ip, void (*before_source)(void *), void *arg,
	    struct mig_report *rep)
{
	int lfd, port, bulk = -1, urgent = -1, rp[2], r;
	pid_t pid;

	mig_listen(listen_ip, &lfd, &port);
	T_ASSERT(pipe2(rp, O_CLOEXEC) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		close(lfd);
		close(rp[0]);
		if (before_source)
			before_source(arg);
		mig_source(c, listen_ip, port, rp[1]);
	}
	close(rp[1]);
	mig_accept_pair(lfd, &bulk, &urgent);
	close(lfd);
	r = mig_destination(c, bulk, urgent, pid, rp[0], rep);
	close(rp[0]);
	close(bulk);
	close(urgent);
	return r;
}
