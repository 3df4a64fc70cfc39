// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis store behind a hostile TCP proxy in front of a real
 * redis-server: replies cut short, garbled, stalled, dripped a byte at a
 * time, bytes flipped inside values, connections refused. Whatever the
 * proxy does, a page is either delivered with the right bytes or gets
 * SIGBUS, within a bounded time; a transient fault is retried on a fresh
 * connection and the page delivered.
 */
#include "rtest.h"

#include <poll.h>

/* ---- the proxy ----------------------------------------------------------- */

/*
 * Sabotage counters: each applies to whichever connection forwards the next
 * chunk of server -> client bytes (so connections opened before the test
 * armed it are hit too), and counts down.
 */
struct proxy {
	int listen_fd, port, upstream_port;
	pthread_t tid;
	_Atomic bool stop;
	_Atomic int reject;		/* close connections right after accept (-1: all) */
	_Atomic int cut;		/* forward 700 bytes of a reply, then close both sides */
	_Atomic int garble;		/* xor the start of a reply: a protocol error */
	_Atomic int stall;		/* this connection never forwards a reply byte again */
	_Atomic int drip;		/* this connection forwards a byte every 20 ms from now on */
	_Atomic int flip;		/* flip one byte in the middle of a reply chunk */
	_Atomic int inject;		/* replace a reply chunk with inject_bytes, then close */
	const char *inject_bytes;
	_Atomic int sabotaged;
};

struct relay {
	struct proxy *px;
	int client;
};

static bool take(_Atomic int *counter)
{
	int v = atomic_load(counter);
	while (v != 0) {
		if (v < 0)
			return true;
		if (atomic_compare_exchange_weak(counter, &v, v - 1))
			return true;
	}
	return false;
}

static bool send_all_fd(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void *relay_main(void *arg)
{
	struct relay *rl = arg;
	struct proxy *px = rl->px;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)px->upstream_port) };
	int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = rl->client;
	bool stalled = false, dripping = false;
	uint8_t *buf = malloc(1 << 20), *pending = NULL;
	size_t npend = 0, cap = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!buf || connect(up, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto out;
	while (!atomic_load(&px->stop)) {
		struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = up, .events = POLLIN } };
		int r = poll(p, 2, dripping ? 20 : 100);
		ssize_t n;

		if (r < 0)
			break;
		if (dripping && npend) {
			if (send(c, pending, 1, MSG_NOSIGNAL) != 1)
				break;
			memmove(pending, pending + 1, --npend);
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(c, buf, 1 << 20, 0);
			if (n <= 0 || !send_all_fd(up, buf, (size_t)n))
				break;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(up, buf, 1 << 20, 0);
			if (n <= 0)
				break;
			if (stalled)
				continue;
			if (!dripping && take(&px->stall)) {
				atomic_fetch_add(&px->sabotaged, 1);
				stalled = true;
				continue;
			}
			if (!dripping && take(&px->drip)) {
				atomic_fetch_add(&px->sabotaged, 1);
				dripping = true;
			}
			if (dripping) {
				if (npend + (size_t)n > cap) {
					cap = (npend + (size_t)n) * 2;
					pending = realloc(pending, cap);
					if (!pending)
						break;
				}
				memcpy(pending + npend, buf, (size_t)n);
				npend += (size_t)n;
				continue;
			}
			if (n > 700 && take(&px->cut)) {
				atomic_fetch_add(&px->sabotaged, 1);
				send_all_fd(c, buf, 700);
				break;
			}
			if (take(&px->inject)) {
				atomic_fetch_add(&px->sabotaged, 1);
				send_all_fd(c, (const uint8_t *)px->inject_bytes, strlen(px->inject_bytes));
				t_sleep_ms(50);
				break;
			}
			if (take(&px->garble)) {
				atomic_fetch_add(&px->sabotaged, 1);
				for (ssize_t i = 0; i < n && i < 64; i++)
					buf[i] ^= 0x5a;
			}
			if (n > 200 && take(&px->flip)) {
				atomic_fetch_add(&px->sabotaged, 1);
				buf[n / 2] ^= 0x01;
			}
			if (!send_all_fd(c, buf, (size_t)n))
				break;
		}
	}
out:
	close(up);
	close(c);
	free(buf);
	free(pending);
	free(rl);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct proxy *px = arg;
	while (!atomic_load(&px->stop)) {
		struct pollfd p = { .fd = px->listen_fd, .events = POLLIN };
		struct relay *rl;
		pthread_t tid;
		int c;

		if (poll(&p, 1, 100) <= 0)
			continue;
		c = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		if (take(&px->reject)) {
			close(c);
			continue;
		}
		rl = malloc(sizeof(*rl));
		if (!rl) {
			close(c);
			continue;
		}
		*rl = (struct relay){ .px = px, .client = c };
		if (pthread_create(&tid, NULL, relay_main, rl) == 0)
			pthread_detach(tid);
		else
			close(c), free(rl);
	}
	return NULL;
}

static void proxy_start(struct proxy *px, int upstream_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(px, 0, sizeof(*px));
	px->upstream_port = upstream_port;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_ASSERT(px->listen_fd >= 0);
	T_ASSERT(bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	T_ASSERT(listen(px->listen_fd, 64) == 0);
	T_ASSERT(getsockname(px->listen_fd, (struct sockaddr *)&a, &alen) == 0);
	px->port = ntohs(a.sin_port);
	T_ASSERT(pthread_create(&px->tid, NULL, accept_main, px) == 0);
}

static void proxy_url(char *buf, size_t len, const struct proxy *px, const char *prefix)
{
	snprintf(buf, len, "redis://127.0.0.1:%d/%s", px->port, prefix);
}

/* ---- a server, an image, a proxy, a lazy region behind it -------------------- */

struct setup {
	struct r_server srv;
	struct r_image im;
	struct proxy px;
	struct r_lazy l;
};

static void setup(struct setup *su, const char *name, size_t len, unsigned timeout_ms, unsigned rflags)
{
	char url[128];
	r_require();
	u_bus_install();
	r_start(&su->srv, false);
	r_url(url, sizeof(url), &su->srv, name);
	r_image_make(&su->im, name, 1, &len, 141, NULL, 0);
	r_push(&su->im, url);
	proxy_start(&su->px, su->srv.port);
	proxy_url(url, sizeof(url), &su->px, name);
	r_lazy_open(&su->l, url, 0, t_scaled_ms(timeout_ms), 2, rflags);
}

/* Every page: the right bytes or SIGBUS, never anything else. Returns pages that got SIGBUS. */
static size_t check_right_or_sigbus(const struct setup *su)
{
	size_t sigbus = 0;
	for (size_t p = 0; p < su->l.len / R_PAGE; p++) {
		int v = u_probe_cmp(su->l.base + p * R_PAGE, su->im.expect[0] + p * R_PAGE, R_PAGE);
		T_ASSERT(v != 1, "page %zu: wrong bytes%s", p,
			 u_all_zero(su->l.base + p * R_PAGE, R_PAGE) ? " (zeros)" : "");
		sigbus += v == -1;
	}
	return sigbus;
}

/* Replies cut off mid-value, three times: reconnect, resend, every page right. */
static int t_short_reads(void *arg)
{
	struct setup su;
	struct fl_redis_stats rs;
	(void)arg;

	setup(&su, "cut", 4 * U_MIB, 5000, 0);
	atomic_store(&su.px.cut, 3);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	rs = r_stats(su.l.st);
	r_log_stats("cut", &rs);
	T_ASSERT_EQ(atomic_load(&su.px.sabotaged), 3);
	T_ASSERT(rs.io_errors >= 3 && rs.connects >= 4, "io errors %llu, connects %llu",
		 (unsigned long long)rs.io_errors, (unsigned long long)rs.connects);
	T_ASSERT_EQ(u_rstats_settled(su.l.reg).pages_poisoned, 0);
	r_lazy_close(&su.l);
	return T_PASS;
}

/* Garbage instead of RESP: the connection is dropped, not trusted again. */
static int t_garbled(void *arg)
{
	struct setup su;
	struct fl_redis_stats rs;
	(void)arg;

	setup(&su, "garble", 4 * U_MIB, 5000, 0);
	atomic_store(&su.px.garble, 3);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	rs = r_stats(su.l.st);
	r_log_stats("garble", &rs);
	T_ASSERT_EQ(atomic_load(&su.px.sabotaged), 3);
	T_ASSERT(rs.io_errors >= 1);
	r_lazy_close(&su.l);
	return T_PASS;
}

/*
 * A connection that stops answering: the read gives up at the timeout, the
 * engine retries the faulting page on a fresh connection, the page arrives.
 */
static int t_stalled(void *arg)
{
	struct setup su;
	struct fl_redis_stats rs;
	uint64_t t0, ms;
	(void)arg;

	setup(&su, "stall", 2 * U_MIB, 1000, 0);
	atomic_store(&su.px.stall, 1);
	t0 = t_now_ns();
	T_ASSERT_EQ(u_probe_cmp(su.l.base, su.im.expect[0], R_PAGE), 0);
	ms = (t_now_ns() - t0) / 1000000;
	t_log("first page after a stalled reply: %llu ms", (unsigned long long)ms);
	T_ASSERT(ms >= t_scaled_ms(900) && ms < t_scaled_ms(5000), "%llu ms", (unsigned long long)ms);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	rs = r_stats(su.l.st);
	r_log_stats("stall", &rs);
	T_ASSERT(rs.timeouts >= 1);
	r_lazy_close(&su.l);
	return T_PASS;
}

/* A byte every 20 ms keeps the socket alive forever: the deadline still holds. */
static int t_dripping(void *arg)
{
	struct setup su;
	uint64_t t0, ms;
	(void)arg;

	setup(&su, "drip", 2 * U_MIB, 1000, 0);
	atomic_store(&su.px.drip, 1);
	t0 = t_now_ns();
	/* The prefetch window times out; the engine's retry of the page alone gets it. */
	T_ASSERT_EQ(u_probe_cmp(su.l.base, su.im.expect[0], R_PAGE), 0);
	ms = (t_now_ns() - t0) / 1000000;
	t_log("page after a dripping reply: %llu ms", (unsigned long long)ms);
	T_ASSERT(ms >= t_scaled_ms(900) && ms < t_scaled_ms(5000), "%llu ms", (unsigned long long)ms);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	T_ASSERT(r_stats(su.l.st).timeouts >= 1);
	r_lazy_close(&su.l);
	return T_PASS;
}

/*
 * Bytes flipped inside replies (values or framing): every page is right or
 * SIGBUS. A flipped value fails its checksum and is read again on a new
 * connection; framing damage drops the connection.
 */
static int t_flipped(void *arg)
{
	struct setup su;
	struct fl_redis_stats rs;
	size_t sigbus;
	(void)arg;

	setup(&su, "flip", 4 * U_MIB, 3000, 0);
	atomic_store(&su.px.flip, 40);
	sigbus = check_right_or_sigbus(&su);
	rs = r_stats(su.l.st);
	r_log_stats("flip", &rs);
	t_log("%d replies flipped, %zu page(s) poisoned", atomic_load(&su.px.sabotaged), sigbus);
	T_ASSERT(atomic_load(&su.px.sabotaged) >= 1);
	T_ASSERT(rs.bad_values + rs.io_errors >= 1, "no flip detected");
	r_lazy_close(&su.l);
	return T_PASS;
}

/* Two flipped replies: the value is read again on a new connection and delivered. */
static int t_flipped_twice(void *arg)
{
	struct setup su;
	struct fl_redis_stats rs;
	(void)arg;

	setup(&su, "flip2", 4 * U_MIB, 3000, 0);
	atomic_store(&su.px.flip, 2);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	rs = r_stats(su.l.st);
	r_log_stats("flip2", &rs);
	T_ASSERT_EQ(atomic_load(&su.px.sabotaged), 2);
	T_ASSERT_EQ(u_rstats_settled(su.l.reg).pages_poisoned, 0);
	T_ASSERT(rs.connects >= 2, "no new connection for the re-read");
	r_lazy_close(&su.l);
	return T_PASS;
}

/* Replies that parse but are wrong in shape: a 2-billion-element array, a short array, an integer. */
static int t_wrong_shapes(void *arg)
{
	static const char *const shapes[] = { "*2000000000\r\n", "*1\r\n$-1\r\n", ":42\r\n", "*2\r\n*1\r\n:1\r\n:2\r\n", NULL };
	struct setup su;
	struct fl_redis_stats rs;
	(void)arg;

	setup(&su, "shape", 4 * U_MIB, 3000, 0);
	for (unsigned i = 0; shapes[i]; i++) {
		su.px.inject_bytes = shapes[i];
		atomic_store(&su.px.inject, 1);
		T_ASSERT_EQ(u_probe_cmp(su.l.base + i * U_MIB, su.im.expect[0] + i * U_MIB, R_PAGE), 0);
		T_ASSERT_EQ(atomic_load(&su.px.inject), 0);
	}
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	rs = r_stats(su.l.st);
	r_log_stats("shapes", &rs);
	T_ASSERT_EQ(atomic_load(&su.px.sabotaged), 4);
	T_ASSERT_EQ(u_rstats_settled(su.l.reg).pages_poisoned, 0);
	r_lazy_close(&su.l);
	return T_PASS;
}

/*
 * A MOVED redirect to a host name too long to keep (300 bytes, the limit is
 * 255): refused as a protocol error, never followed to a name cut short
 * (which could be another host). The page still arrives, from the node it
 * belongs to.
 */
static int t_long_redirect(void *arg)
{
	static char reply[400];
	struct setup su;
	struct fl_redis_stats rs;
	size_t n;
	(void)arg;

	n = (size_t)snprintf(reply, sizeof(reply), "-MOVED 0 ");
	memset(reply + n, 'h', 300);
	snprintf(reply + n + 300, sizeof(reply) - n - 300, ":6379\r\n");
	setup(&su, "longmoved", 4 * U_MIB, 3000, 0);
	su.px.inject_bytes = reply;
	atomic_store(&su.px.inject, 1);
	T_ASSERT_EQ(u_probe_cmp(su.l.base, su.im.expect[0], R_PAGE), 0);
	T_ASSERT_EQ(atomic_load(&su.px.inject), 0);
	rs = r_stats(su.l.st);
	r_log_stats("longmoved", &rs);
	T_ASSERT_EQ(rs.moved, 0);
	T_ASSERT_EQ(rs.nodes, 1);
	T_ASSERT_EQ(check_right_or_sigbus(&su), 0);
	r_lazy_close(&su.l);
	return T_PASS;
}

/* A server that accepts and hangs up on everything: creation fails in bounded time. */
static int t_rejected(void *arg)
{
	struct r_server srv;
	struct proxy px;
	struct fl_redis_opts o;
	struct fl_store *st = NULL;
	uint64_t t0, ms;
	char url[128];
	int r;
	(void)arg;

	r_require();
	r_start(&srv, false);
	proxy_start(&px, srv.port);
	atomic_store(&px.reject, -1);
	proxy_url(url, sizeof(url), &px, "rej");
	o = r_opts(url, 0, t_scaled_ms(500));
	t0 = t_now_ns();
	r = fl_store_redis_new(&o, &st);
	ms = (t_now_ns() - t0) / 1000000;
	T_ASSERT(r == -ETIMEDOUT, "fl_store_redis_new: %d", r);
	T_ASSERT(ms >= t_scaled_ms(400) && ms < t_scaled_ms(3000), "%llu ms", (unsigned long long)ms);
	T_ASSERT(st == NULL);
	r_kill(&srv);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "short-reads", t_short_reads, NULL, 60 },
	{ "garbled", t_garbled, NULL, 60 },
	{ "stalled", t_stalled, NULL, 60 },
	{ "dripping", t_dripping, NULL, 60 },
	{ "flipped", t_flipped, NULL, 120 },
	{ "flipped-twice", t_flipped_twice, NULL, 60 },
	{ "wrong-shapes", t_wrong_shapes, NULL, 60 },
	{ "long-redirect", t_long_redirect, NULL, 60 },
	{ "rejected", t_rejected, NULL, 60 },
};

int main(int argc, char **argv)
{
	return r_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
