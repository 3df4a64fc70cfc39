// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * kv-load: a load generator for kv-server. N connections send SET and GET
 * requests for random keys for a while; at the end it prints requests per
 * second and latency percentiles (p50, p99, max) — run it while the server
 * saves (BGSAVE) to see what a save costs the clients.
 *
 * Every value is "<key>:<counter>:<key>", so any value read back (or found
 * in a saved image) can be checked for tearing; --check fails on a
 * malformed value.
 *
 * --until-saved keeps the load running until the save it started is done
 * (at least --seconds) and reports the requests that started during the
 * save on their own: what the save cost the clients. --redis speaks to a
 * redis-server instead (inline commands; the save is its BGSAVE). SIGINT
 * or SIGTERM ends the load before --seconds, with the same report (and
 * the --verify check).
 *
 * Clients of a server that moves (kv-server --migrate-to): --failover
 * HOST:PORT is where it goes. When the connection to the first server
 * drops or is refused, a client connects there instead (retrying for
 * --failover-s seconds, default 30) and sends again the request that got
 * no reply. A reply that takes longer than --failover-s counts as a
 * dropped connection too (a server gone without a reset). A SET without a reply may or may not have been applied; the
 * same value is sent again, so applying it twice changes nothing.
 * --verify: each connection writes its own keys (key i belongs to
 * connection i % conns), remembers for each the counter of the last SET
 * that got +OK and of a SET sent after it without a reply, and reads every
 * key it wrote back when it moves to the failover server (before it sends
 * anything there) and at the end: each must hold one of those two values.
 * Missing keys and other values are reported, and fail the run. (The
 * request that was interrupted by the move waits for that check; its
 * latency, as reported, leaves the check out.)
 *
 * The last line, "kv-load-result key=value ...", is for programs (faultline
 * bench kv): rps, p50_us, p99_us, max_us, and with a save save_s, save_n,
 * save_rps, save_p99_us, save_max_us; with --failover, failovers
 * (connections made to the failover server) and resent (requests sent
 * again); with --verify, verified (keys read back, at the moves and at the
 * end), missing, wrong.
 *
 *   kv-load --port N [--host ADDR] [--conns N] [--seconds S] [--keys N] [--prefix P]
 *           [--set-pct N] [--bgsave-at S [--incr] [--until-saved]] [--redis]
 *           [--failover HOST:PORT [--failover-s S]] [--verify]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_SAMPLES (1u << 20)

struct cfg {
	int port, conns, keys, set_pct;
	double seconds, bgsave_at, failover_s;
	bool incr, until_saved, redis, verify;
	const char *prefix, *failover_to;
	struct sockaddr_in server, failover;	/* failover.sin_port 0: none */
	_Atomic bool stop;		/* set by main: the workers finish */
};

struct worker {
	struct cfg *c;
	unsigned id;
	pthread_t th;
	uint64_t *lat, *start;		/* per request: latency, start time */
	size_t nlat;
	uint64_t ops, bad;
	int err;
	bool moved;			/* now on the failover server */
	uint64_t failovers, resent;
	/* --verify, per key: the counter of the last SET answered +OK, and
	 * of one sent after it that got no reply (0: none). */
	uint64_t *last_ok, *unanswered;
	uint64_t verified, missing, wrong;
	bool verifying;
	uint64_t verify_ns;		/* time spent checking keys at a failover */
};

/* One connection with a read buffer: replies are read a buffer at a time,
 * not a byte at a time (the load generator shares the CPUs it measures). */
struct conn {
	int fd;
	size_t have;
	char buf[4096];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* reply_s > 0: a reply that does not come within it is a lost connection
 * (a server moved away without a reset), so that the failover happens. */
static int dial(const struct sockaddr_in *sa, double reply_s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa))) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (reply_s > 0) {
		struct timeval tv = { .tv_sec = (time_t)reply_s,
				      .tv_usec = (suseconds_t)((reply_s - (double)(time_t)reply_s) * 1e6) };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

/* "HOST:PORT", HOST a name or an IPv4 address. */
static int resolve(const char *host, const char *port, struct sockaddr_in *ret_addr)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;

	if (getaddrinfo(host, port, &hints, &ai))
		return -1;
	memcpy(ret_addr, ai->ai_addr, sizeof(*ret_addr));
	freeaddrinfo(ai);
	return 0;
}

static int resolve_hostport(const char *hostport, struct sockaddr_in *ret_addr)
{
	const char *colon = strrchr(hostport, ':');
	char host[256];

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) || !colon[1])
		return -1;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	return resolve(host, colon + 1, ret_addr);
}

/* One reply line, '\r' dropped, '\n' kept. */
static int read_line(struct conn *cn, char *out, size_t len)
{
	for (;;) {
		char *nl = memchr(cn->buf, '\n', cn->have);
		if (nl) {
			size_t ll = (size_t)(nl - cn->buf) + 1, o = 0;
			for (size_t i = 0; i < ll && o < len - 1; i++)
				if (cn->buf[i] != '\r')
					out[o++] = cn->buf[i];
			out[o] = '\0';
			memmove(cn->buf, cn->buf + ll, cn->have - ll);
			cn->have -= ll;
			return 0;
		}
		if (cn->have == sizeof(cn->buf))
			return -1;
		ssize_t r = read(cn->fd, cn->buf + cn->have, sizeof(cn->buf) - cn->have);
		if (r <= 0)
			return -1;
		cn->have += (size_t)r;
	}
}

/* Exactly n bytes (a Redis bulk string's body). */
static int read_bytes(struct conn *cn, char *out, size_t n)
{
	while (cn->have < n) {
		if (n > sizeof(cn->buf))
			return -1;
		ssize_t r = read(cn->fd, cn->buf + cn->have, sizeof(cn->buf) - cn->have);
		if (r <= 0)
			return -1;
		cn->have += (size_t)r;
	}
	memcpy(out, cn->buf, n);
	memmove(cn->buf, cn->buf + n, cn->have - n);
	cn->have -= n;
	return 0;
}

/*
 * Send one request line, read one reply in kv-server's form: a Redis bulk
 * reply ("$len", then the value) comes back as "$value\n", its nil
 * ("$-1") as "-\n".
 */
static int request(struct conn *cn, bool redis, const char *req, char *reply, size_t len)
{
	size_t n = strlen(req);

	if (write(cn->fd, req, n) != (ssize_t)n || read_line(cn, reply, len))
		return -1;
	if (redis && reply[0] == '$') {
		if (!strcmp(reply, "$-1\n")) {
			snprintf(reply, len, "-\n");
			return 0;
		}
		reply[0] = '$';
		return read_line(cn, reply + 1, len - 1);
	}
	return 0;
}

/* Redis: INFO persistence, a bulk string; is a BGSAVE still running
 * (1), done (0), failed (-1)? */
static int redis_saving(struct conn *cn)
{
	char line[64], body[4096];
	unsigned long n;

	if (request(cn, false, "INFO persistence\r\n", line, sizeof(line)) || line[0] != '$')
		return -1;
	n = strtoul(line + 1, NULL, 10);
	if (n + 2 > sizeof(body) - 1 || read_bytes(cn, body, n + 2))
		return -1;
	body[n] = '\0';
	if (strstr(body, "rdb_bgsave_in_progress:1"))
		return 1;
	return strstr(body, "rdb_last_bgsave_status:ok") ? 0 : -1;
}

/* kv-server: LASTSAVE says +RUNNING, +DONE or -ERR. */
static int kv_saving(struct conn *cn)
{
	char line[512];

	if (request(cn, false, "LASTSAVE\n", line, sizeof(line)))
		return -1;
	if (!strncmp(line, "+RUNNING", 8))
		return 1;
	return !strncmp(line, "+DONE", 5) ? 0 : -1;
}

/* "<key>:<n>:<key>" */
static bool well_formed(const char *key, const char *val)
{
	size_t kl = strlen(key);
	const char *p = val, *q;

	if (strncmp(p, key, kl) || p[kl] != ':')
		return false;
	p += kl + 1;
	q = strchr(p, ':');
	return q && q > p && !strncmp(q + 1, key, kl) && q[1 + kl] == '\n';
}

static int cmp_u64(const void *a, const void *b);
static void sleep_s(double s);
static void verify(struct worker *w, struct conn *cn);

/*
 * The connection is gone (dropped, refused, or no reply): connect to the
 * failover server, retrying until `deadline` (a migration's destination
 * listens from its switchover on; until then it refuses).
 */
static int reconnect(struct worker *w, struct conn *cn, uint64_t deadline)
{
	struct cfg *c = w->c;

	if (cn->fd >= 0)
		close(cn->fd);
	cn->fd = -1;
	cn->have = 0;
	if (!c->failover.sin_port)
		return -1;
	for (;;) {
		int fd = dial(&c->failover, c->failover_s);

		if (fd >= 0) {
			cn->fd = fd;
			w->moved = true;
			w->failovers++;
			return 0;
		}
		if (now_ns() > deadline)
			return -1;
		sleep_s(0.02);
	}
}

/* request(), sent again on the failover connection when it got no reply;
 * -1 when no server answered within --failover-s. */
static int request_moving(struct worker *w, struct conn *cn, const char *req, char *reply, size_t len)
{
	uint64_t deadline = 0;

	for (;;) {
		if (cn->fd >= 0 && !request(cn, w->c->redis, req, reply, len))
			return 0;
		if (!deadline)
			deadline = now_ns() + (uint64_t)(w->c->failover_s * 1e9);
		if (reconnect(w, cn, deadline))
			return -1;
		/* The keys first, before this connection writes anything
		 * there: a write the first server acknowledged and the new one
		 * lacks shows now, before a later write to the key hides it. */
		if (w->c->verify && !w->verifying) {
			uint64_t t0 = now_ns();

			w->verifying = true;
			verify(w, cn);
			w->verifying = false;
			w->verify_ns += now_ns() - t0;
			if (w->err)
				return -1;
		}
		w->resent++;
	}
}

/* The counter of a well-formed value "<key>:<n>:<key>\n". */
static uint64_t value_counter(const char *key, const char *val)
{
	return strtoull(val + strlen(key) + 1, NULL, 10);
}

/* --verify: every key this connection wrote holds the value of its last
 * SET answered +OK, or of the one sent after it without a reply. */
static void verify(struct worker *w, struct conn *cn)
{
	struct cfg *c = w->c;
	char req[128], reply[512], key[64];
	unsigned reported = 0;

	for (uint64_t i = w->id; i < (uint64_t)c->keys; i += (uint64_t)c->conns) {
		const char *why = NULL;

		if (!w->last_ok[i] && !w->unanswered[i])
			continue;
		snprintf(key, sizeof(key), "%s%llu", c->prefix, (unsigned long long)i);
		snprintf(req, sizeof(req), "GET %s%s", key, c->redis ? "\r\n" : "\n");
		if (request_moving(w, cn, req, reply, sizeof(reply))) {
			w->err = ECONNREFUSED;
			return;
		}
		w->verified++;
		if (!strcmp(reply, "-\n")) {
			if (w->last_ok[i]) {
				w->missing++;
				why = "missing";
			}
		} else if (reply[0] != '$' || !well_formed(key, reply + 1)) {
			w->wrong++;
			why = "malformed";
		} else {
			uint64_t n = value_counter(key, reply + 1);

			if (n != w->last_ok[i] && (!w->unanswered[i] || n != w->unanswered[i])) {
				w->wrong++;
				why = "another value";
			}
		}
		if (why && reported++ < 10)
			fprintf(stderr, "kv-load: verify: %s: %s: got %.*s, want counter %llu (or %llu, sent without a reply)\n",
				key, why, (int)strcspn(reply, "\n"), reply, (unsigned long long)w->last_ok[i],
				(unsigned long long)w->unanswered[i]);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct cfg *c = w->c;
	uint64_t x = (uint64_t)(uintptr_t)w ^ now_ns(), counter = 0;
	char req[512], reply[512], key[64];
	struct conn *cn = calloc(1, sizeof(*cn));
	int fd = dial(&c->server, c->failover.sin_port ? c->failover_s : 0);

	if (!cn) {
		w->err = ENOMEM;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	cn->fd = fd;
	if (fd < 0 && reconnect(w, cn, now_ns() + (uint64_t)(c->failover_s * 1e9))) {
		w->err = c->failover.sin_port ? ECONNREFUSED : errno;
		free(cn);
		return NULL;
	}
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t k = x % (uint64_t)c->keys;
		if (c->verify) {
			/* This connection's own keys: k % conns == id. */
			k = k - k % (uint64_t)c->conns + w->id;
			if (k >= (uint64_t)c->keys)
				k -= (uint64_t)c->conns;
		}
		snprintf(key, sizeof(key), "%s%llu", c->prefix, (unsigned long long)k);
		bool set = (int)((x >> 32) % 100) < c->set_pct;
		const char *eol = c->redis ? "\r\n" : "\n";
		if (set) {
			snprintf(req, sizeof(req), "SET %s %s:%llu:%s%s", key, key, (unsigned long long)++counter, key,
				 eol);
			if (c->verify)
				w->unanswered[k] = counter;
		} else {
			snprintf(req, sizeof(req), "GET %s%s", key, eol);
		}
		uint64_t t0 = now_ns(), checked = w->verify_ns;
		if (request_moving(w, cn, req, reply, sizeof(reply))) {
			w->err = c->failover.sin_port ? ECONNREFUSED : EPIPE;
			break;
		}
		if (w->nlat < MAX_SAMPLES) {
			w->start[w->nlat] = t0;
			w->lat[w->nlat++] = now_ns() - t0 - (w->verify_ns - checked);
		}
		w->ops++;
		if (!set && reply[0] == '$' && !well_formed(key, reply + 1))
			w->bad++;
		if (set && strcmp(reply, "+OK\n"))
			w->bad++;
		else if (set && c->verify) {
			w->last_ok[k] = counter;
			w->unanswered[k] = 0;
		}
	}
	if (!w->err && c->verify)
		verify(w, cn);
	if (cn->fd >= 0)
		close(cn->fd);
	free(cn);
	return NULL;
}

/* SIGINT or SIGTERM: end the load now, as if --seconds were over. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR && !interrupted)
		;
}

/* Sorted latencies: count, p50, p99, max (ns). */
struct pct {
	size_t n;
	double p50, p99, max;
};

static struct pct percentiles(uint64_t *v, size_t n)
{
	struct pct p = { .n = n };

	qsort(v, n, sizeof(uint64_t), cmp_u64);
	if (n) {
		p.p50 = (double)v[n / 2];
		p.p99 = (double)v[n * 99 / 100];
		p.max = (double)v[n - 1];
	}
	return p;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static struct cfg c = { .conns = 4, .keys = 100000, .set_pct = 50, .seconds = 5, .bgsave_at = -1, .prefix = "k",
				.failover_s = 30 };
	static struct worker w[MAX_CONNS];
	const char *host = "127.0.0.1";
	char port_s[16];
	uint64_t ops = 0, bad = 0, failovers = 0, resent = 0, verified = 0, missing = 0, wrong = 0, *all, *during, save_t0 = 0, save_t1 = 0;
	size_t nall = 0, nduring = 0;
	struct pct pa, ps = { 0 };
	double t;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			c.port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			c.conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			c.seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			c.keys = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--set-pct") && i + 1 < argc)
			c.set_pct = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			c.prefix = argv[++i];
		else if (!strcmp(argv[i], "--bgsave-at") && i + 1 < argc)
			c.bgsave_at = atof(argv[++i]);
		else if (!strcmp(argv[i], "--incr"))
			c.incr = true;
		else if (!strcmp(argv[i], "--until-saved"))
			c.until_saved = true;
		else if (!strcmp(argv[i], "--redis"))
			c.redis = true;
		else if (!strcmp(argv[i], "--host") && i + 1 < argc)
			host = argv[++i];
		else if (!strcmp(argv[i], "--failover") && i + 1 < argc)
			c.failover_to = argv[++i];
		else if (!strcmp(argv[i], "--failover-s") && i + 1 < argc)
			c.failover_s = atof(argv[++i]);
		else if (!strcmp(argv[i], "--verify"))
			c.verify = true;
		else {
			fprintf(stderr, "usage: kv-load --port N [--host ADDR] [--conns N] [--seconds S] [--keys N] [--prefix P]\n"
					"               [--set-pct N] [--bgsave-at S [--incr] [--until-saved]] [--redis]\n"
					"               [--failover HOST:PORT [--failover-s S]] [--verify]\n");
			return 2;
		}
	}
	if (c.port <= 0 || c.conns < 1 || c.conns > MAX_CONNS || c.keys < 1)
		return fprintf(stderr, "kv-load: bad --port, --conns (1-%d) or --keys\n", MAX_CONNS), 2;
	snprintf(port_s, sizeof(port_s), "%d", c.port);
	if (resolve(host, port_s, &c.server))
		return fprintf(stderr, "kv-load: cannot resolve --host %s\n", host), 2;
	if (c.failover_to && (resolve_hostport(c.failover_to, &c.failover) || !c.failover.sin_port))
		return fprintf(stderr, "kv-load: --failover wants HOST:PORT, not '%s'\n", c.failover_to), 2;
	if (c.failover_s <= 0)
		return fprintf(stderr, "kv-load: --failover-s wants a positive number of seconds\n"), 2;
	if (c.verify && c.keys < c.conns)
		return fprintf(stderr, "kv-load: --verify gives each connection its own keys: --keys >= --conns\n"), 2;
	if (c.until_saved && c.bgsave_at < 0)
		return fprintf(stderr, "kv-load: --until-saved needs --bgsave-at\n"), 2;
	/* The workers block SIGINT and SIGTERM (a signal would cut a request
	 * short, and look like a server gone); main takes them. */
	sigset_t stop_sigs;
	struct sigaction sa = { .sa_handler = on_interrupt, .sa_flags = SA_RESTART };

	sigemptyset(&stop_sigs);
	sigaddset(&stop_sigs, SIGINT);
	sigaddset(&stop_sigs, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
	uint64_t t0 = now_ns();
	for (int i = 0; i < c.conns; i++) {
		w[i].c = &c;
		w[i].id = (unsigned)i;
		w[i].lat = malloc(MAX_SAMPLES * sizeof(uint64_t));
		w[i].start = malloc(MAX_SAMPLES * sizeof(uint64_t));
		if (c.verify) {
			w[i].last_ok = calloc((size_t)c.keys, sizeof(uint64_t));
			w[i].unanswered = calloc((size_t)c.keys, sizeof(uint64_t));
			if (!w[i].last_ok || !w[i].unanswered)
				return perror("kv-load"), 1;
		}
		if (!w[i].lat || !w[i].start || pthread_create(&w[i].th, NULL, worker_main, &w[i]))
			return perror("kv-load"), 1;
	}
	pthread_sigmask(SIG_UNBLOCK, &stop_sigs, NULL);
	if (c.bgsave_at >= 0) {
		char reply[512];
		struct conn *cn = calloc(1, sizeof(*cn));
		const char *cmd = c.redis ? "BGSAVE\r\n" : c.incr ? "BGSAVE INCR\n" : "BGSAVE\n";

		sleep_s(c.bgsave_at);
		if (!cn || (cn->fd = dial(&c.server, c.failover.sin_port ? c.failover_s : 0)) < 0)
			return perror("kv-load: BGSAVE"), 1;
		save_t0 = now_ns();
		if (request(cn, false, cmd, reply, sizeof(reply)))
			return perror("kv-load: BGSAVE"), 1;
		printf("kv-load: BGSAVE at %.1f s: %s", c.bgsave_at, reply);
		if (c.until_saved) {
			int st;
			if (reply[0] != '+')
				return fprintf(stderr, "kv-load: BGSAVE refused: %s", reply), 1;
			/* Poll every 10 ms: the save's end is known to that. */
			while ((st = c.redis ? redis_saving(cn) : kv_saving(cn)) == 1)
				sleep_s(0.01);
			save_t1 = now_ns();
			if (st < 0)
				return fprintf(stderr, "kv-load: the save failed\n"), 1;
		}
		close(cn->fd);
		free(cn);
	}
	{
		/* The load runs --seconds, or until the save is done. */
		double left = c.seconds - (double)(now_ns() - t0) / 1e9;
		if (left > 0 && !interrupted)
			sleep_s(left);
		atomic_store(&c.stop, true);
	}
	int failed = 0;
	for (int i = 0; i < c.conns; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].err && !failed)
			failed = fprintf(stderr, "kv-load: connection %d: %s\n", i, strerror(w[i].err)) | 1;
		ops += w[i].ops;
		bad += w[i].bad;
		failovers += w[i].failovers;
		resent += w[i].resent;
		verified += w[i].verified;
		missing += w[i].missing;
		wrong += w[i].wrong;
		free(w[i].last_ok);
		free(w[i].unanswered);
	}
	if (c.failover_to)
		printf("kv-load: failover to %s: %llu connections made there, %llu requests sent again\n", c.failover_to,
		       (unsigned long long)failovers, (unsigned long long)resent);
	if (c.verify && !failed)
		printf("kv-load: verify: %llu keys read back, %llu missing, %llu with another value\n",
		       (unsigned long long)verified, (unsigned long long)missing, (unsigned long long)wrong);
	if (failed) {
		for (int i = 0; i < c.conns; i++) {
			free(w[i].lat);
			free(w[i].start);
		}
		return 1;
	}
	t = (double)(now_ns() - t0) / 1e9;
	all = malloc(ops * sizeof(uint64_t) + 1);
	during = malloc(ops * sizeof(uint64_t) + 1);
	if (!all || !during)
		return perror("kv-load"), 1;
	for (int i = 0; i < c.conns; i++) {
		for (size_t k = 0; k < w[i].nlat; k++) {
			all[nall++] = w[i].lat[k];
			/* A request that started while the save ran. */
			if (save_t1 && w[i].start[k] >= save_t0 && w[i].start[k] < save_t1)
				during[nduring++] = w[i].lat[k];
		}
		free(w[i].lat);
		free(w[i].start);
	}
	pa = percentiles(all, nall);
	printf("kv-load: %llu requests in %.1f s: %.0f req/s; latency p50 %.0f us, p99 %.0f us, max %.0f us; "
	       "%llu bad replies\n",
	       (unsigned long long)ops, t, (double)ops / t, pa.p50 / 1e3, pa.p99 / 1e3, pa.max / 1e3,
	       (unsigned long long)bad);
	printf("kv-load-result rps=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f bad=%llu", (double)ops / t, pa.p50 / 1e3,
	       pa.p99 / 1e3, pa.max / 1e3, (unsigned long long)bad);
	if (save_t1) {
		double sd = (double)(save_t1 - save_t0) / 1e9;
		ps = percentiles(during, nduring);
		printf(" save_s=%.3f save_n=%zu save_rps=%.0f save_p50_us=%.0f save_p99_us=%.0f save_max_us=%.0f", sd,
		       nduring, (double)nduring / sd, ps.p50 / 1e3, ps.p99 / 1e3, ps.max / 1e3);
	}
	if (c.failover_to)
		printf(" failovers=%llu resent=%llu", (unsigned long long)failovers, (unsigned long long)resent);
	if (c.verify)
		printf(" verified=%llu missing=%llu wrong=%llu", (unsigned long long)verified, (unsigned long long)missing,
		       (unsigned long long)wrong);
	printf("\n");
	if (save_t1)
		printf("kv-load: during the save (%.2f s): %zu requests: %.0f req/s; p99 %.0f us, max %.0f us\n",
		       (double)(save_t1 - save_t0) / 1e9, nduring, (double)nduring / ((double)(save_t1 - save_t0) / 1e9),
		       ps.p99 / 1e3, ps.max / 1e3);
	free(all);
	free(during);
	return bad || missing || wrong ? 1 : 0;
}
