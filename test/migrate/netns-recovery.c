// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Postcopy recovery between two network namespaces joined by a veth pair
 * (nsnet.h), with the faults made on the path: the source process in
 * namespace 0 migrates to the destination (the case's process) in
 * namespace 1 through a relay that listens on namespace 1's veth address.
 *  - cut-twice-*: the in-test relay (mig-util.h) resets the bulk channel,
 *    then the urgent one with a faulter waiting on it; 4 writers with
 *    per-block counters at the source, the shadow taken at quiesce, 4
 *    application threads at the destination: zero lost or wrong blocks,
 *    2 recoveries on both sides; the same with TLS (PSK) on both channels.
 *  - stalls-hybrid-*: `faultline proxy` ($FAULTLINE) on the path with
 *    --delay-ms 3 and --loss 1, a hybrid migration: the memory is exact and
 *    the proxy reports the stalls it injected.
 *  - recovery-timeout-*: both channels reset and the source never gets
 *    through again: SIGBUS on missing pages after recovery_ms, never zeros;
 *    -ETIMEDOUT on both sides, the source's application never resumed.
 */
#include "mig-util.h"
#include "nsnet.h"

#define LEN (8u << 20)
#define KEY "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"

enum nr_kind { NR_CUT_TWICE, NR_CUT_TWICE_TLS, NR_TIMEOUT, NR_STALLS };

struct nr_case {
	enum nr_kind kind;
	enum fl_mem_type mem;
};

static uint64_t case_addr(const struct nr_case *nc)
{
	return 0x5e8000000000ull + ((uint64_t)nc->kind * 4 + nc->mem) * (64ull << 20);
}

static void source_side(void *arg)
{
	nsnet_enter(arg, 0);
}

static void nr_src_cfg(const struct nr_case *nc, struct m_src_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->addr = case_addr(nc);
	c->len = LEN;
	c->mem = nc->mem;
	c->mode = FL_MIGRATE_POSTCOPY;
	c->reconnect = M_RECONNECT_RELAY;
	c->recovery_ms = t_scaled_ms(15000);
	c->timeout_ms = t_scaled_ms(5000);
	c->small_sndbuf = true;
	c->expect_recoveries = -1;
}

/* ---- faultline proxy on the path ------------------------------------------ */

struct proxy {
	pid_t pid;
	int out;			/* its stdout */
	int port;
};

/* Start `faultline proxy --listen IP:0 --to 127.0.0.1:to_port ARGS...` in
 * this namespace and read the port it listens on. */
static void proxy_start(struct proxy *p, const char *ip, int to_port, const char *delay_ms, const char *loss)
{
	const char *bin = getenv("FAULTLINE");
	char listen_addr[64], to[64], line[256];
	size_t n = 0;
	int fds[2];

	if (!bin || access(bin, X_OK))
		t_skip_resource("no faultline binary ($FAULTLINE)");
	snprintf(listen_addr, sizeof(listen_addr), "%s:0", ip);
	snprintf(to, sizeof(to), "127.0.0.1:%d", to_port);
	T_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
	p->pid = fork();
	T_ASSERT(p->pid >= 0);
	if (p->pid == 0) {
		dup2(fds[1], 1);
		execl(bin, bin, "proxy", "--listen", listen_addr, "--to", to, "--delay-ms", delay_ms, "--loss", loss,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	p->out = fds[0];
	/* "proxy listening on IP:PORT\n" */
	while (n + 1 < sizeof(line) && !memchr(line, '\n', n)) {
		ssize_t k = read(p->out, line + n, sizeof(line) - 1 - n);

		T_ASSERT(k > 0, "faultline proxy said nothing");
		n += (size_t)k;
	}
	line[n] = 0;
	T_ASSERT(strncmp(line, "proxy listening on ", 19) == 0 && strrchr(line, ':'), "proxy: %s", line);
	p->port = atoi(strrchr(line, ':') + 1);
	T_ASSERT(p->port > 0, "proxy: %s", line);
}

/* Stop it (SIGTERM) and return the stalls it reports having injected. */
static uint64_t proxy_stop(struct proxy *p)
{
	char text[1024];
	unsigned long long stalls = 0;
	const char *s;
	size_t n = 0;
	ssize_t k;
	int status;

	kill(p->pid, SIGTERM);
	while (n + 1 < sizeof(text) && (k = read(p->out, text + n, sizeof(text) - 1 - n)) > 0)
		n += (size_t)k;
	text[n] = 0;
	close(p->out);
	T_OK(t_wait_pid(p->pid, 10000, &status));
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "faultline proxy status 0x%x", status);
	s = strstr(text, " cut, ");
	T_ASSERT(s && sscanf(s, " cut, %llu stalls", &stalls) == 1, "proxy reported: %s", text);
	t_log("%s", strstr(text, "proxy: ") ? strstr(text, "proxy: ") : text);
	return stalls;
}

/*
 * Hybrid through delay and loss stalls: precopy rounds while the writers
 * run, then postcopy with the application (a thread here) reading every
 * block while pages still arrive; every block equals the shadow.
 */
static int stalls_hybrid(struct nsnet *n, const struct nr_case *nc)
{
	struct m_net net = { .relay_ip = NSNET_IP1, .in_source = source_side, .in_source_arg = n };
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_dest *dst;
	struct m_src_cfg c;
	struct proxy px;
	struct m_dst d;
	uint64_t wrong = 0, stalls;
	int lfd, port, bulk, urgent;
	pid_t pid;

	nr_src_cfg(nc, &c);
	c.mode = FL_MIGRATE_HYBRID;
	c.reconnect = M_RECONNECT_NONE;
	c.expect_recoveries = 0;
	/* Each stall delays everything after it by 200 ms more: seconds of
	 * added latency by the end, which is not silence (what timeout_ms is
	 * for), so both sides get 30 s. */
	c.timeout_ms = t_scaled_ms(30000);
	net.dst_timeout_ms = t_scaled_ms(30000);
	m_listen(&lfd, &port);
	proxy_start(&px, NSNET_IP1, port, "3", "1");
	m_net_source(&net, &c, px.port);
	m_dst_init(&d, c.addr, c.len);
	pid = m_net_source_fork(&net, &c);
	T_OK(fl_migrate_accept(lfd, t_scaled_ms(30000), &bulk, &urgent));
	dst = m_dst_start(&net, &d, bulk, urgent, NULL, 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 60000), "never resumed");
	/* The application, from the end backwards: faults, fetched over
	 * the stalling urgent channel, racing the push. */
	for (size_t i = 0; i < d.nblk; i++) {
		size_t b = d.nblk - 1 - i;

		if (XXH3_64bits(d.mem + b * M_BLK, M_BLK) != d.hashes[b])
			wrong++;
	}
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), 0);
	T_ASSERT(wrong == 0, "the application read %llu blocks unlike the pause instant", (unsigned long long)wrong);
	for (size_t b = 0; b < d.nblk; b++) {
		const uint64_t *q = (const uint64_t *)(const void *)(d.mem + b * M_BLK);

		T_ASSERT(XXH3_64bits(q, M_BLK) == d.hashes[b], "block %zu lost or wrong", b);
		T_ASSERT(q[0] == q[M_BLK / 8 - 1] && (m_block_hot(b) ? q[0] > 0 : q[0] == 0), "block %zu torn", b);
	}
	T_OK(fl_migrate_dest_stats(dst, &st));
	T_ASSERT_EQ(st.recoveries, 0);
	m_source_reap(pid);
	fl_migrate_dest_free(dst);
	stalls = proxy_stop(&px);
	/* The loss did happen on the path: not a clean link that passed. */
	T_ASSERT(stalls > 0, "the proxy injected no stall");
	t_log("%llu stalls injected, %llu pages received, %llu requests", (unsigned long long)stalls,
	      (unsigned long long)st.pages_received, (unsigned long long)st.requests);
	close(lfd);
	close(bulk);
	close(urgent);
	return T_PASS;
}

/* ---- the cases ------------------------------------------------------------- */

/* In nsnet_run()'s child: this process is the destination's host. */
static int in_namespaces(struct nsnet *n, void *arg)
{
	const struct nr_case *nc = arg;
	struct m_net net = { .relay_ip = NSNET_IP1, .in_source = source_side, .in_source_arg = n };
	struct m_src_cfg c;
	uint64_t rx;
	int r;

	nsnet_enter(n, 1);
	nr_src_cfg(nc, &c);
	switch (nc->kind) {
	case NR_CUT_TWICE_TLS:
		net.psk_key_hex = KEY;
		/* fall through */
	case NR_CUT_TWICE:
		r = m_cut_twice(&net, &c);
		break;
	case NR_TIMEOUT:
		r = m_recovery_lost(&net, &c, M_LOST_RECONNECT_FAILS);
		break;
	default:
		r = stalls_hybrid(n, nc);
		break;
	}
	if (r != T_PASS)
		return r;
	/* The pages crossed the veth pair, not a loopback. */
	rx = nsnet_rx_bytes(n, 1);
	T_ASSERT(rx != UINT64_MAX, "cannot read the veth's statistics");
	T_ASSERT(rx >= (nc->kind == NR_TIMEOUT ? M_BLK : LEN / 2), "the destination's veth received %llu bytes",
		 (unsigned long long)rx);
	return T_PASS;
}

static int test_netns_recovery(void *arg)
{
	const struct nr_case *nc = arg;
	struct nsnet n;

	if (nc->kind == NR_CUT_TWICE_TLS && !FL_HAVE_TLS)
		t_skip("built without TLS support (-Dtls=disabled)");
	if (nc->mem == FL_MEM_SHMEM)
		t_require_needs(T_MISSING_SHMEM);
	if (nc->mem == FL_MEM_HUGETLB) {
		t_require_needs(T_MISSING_HUGETLB);
		t_need_huge(2 * LEN);
	}
	nsnet_setup(&n);
	return nsnet_run(&n, in_namespaces, (void *)nc, t_scaled_ms(110000));
}

#define NR(kind, mem) (&(const struct nr_case){ kind, mem })
#define HUGE(mem) ((mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES : 0u)
#define PER_MEM(mem, name)                                                                                   \
	{ "cut-twice-" name, test_netns_recovery, (void *)NR(NR_CUT_TWICE, mem), 120, HUGE(mem) },           \
	{ "tls-psk-cut-twice-" name, test_netns_recovery, (void *)NR(NR_CUT_TWICE_TLS, mem), 120, HUGE(mem) }, \
	{ "recovery-timeout-" name, test_netns_recovery, (void *)NR(NR_TIMEOUT, mem), 60, HUGE(mem) }

static const struct t_case cases[] = {
	PER_MEM(FL_MEM_ANON, "anon"),
	PER_MEM(FL_MEM_SHMEM, "shmem"),
	PER_MEM(FL_MEM_HUGETLB, "hugetlb"),
	{ "stalls-hybrid-anon", test_netns_recovery, (void *)NR(NR_STALLS, FL_MEM_ANON), 120, 0 },
	{ "stalls-hybrid-hugetlb", test_netns_recovery, (void *)NR(NR_STALLS, FL_MEM_HUGETLB), 120,
	  T_HUGE_PAGES },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
