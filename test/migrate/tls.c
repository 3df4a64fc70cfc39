// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Migration over TLS (GnuTLS) on both channels: a pre-shared key and
 * mutual X.509 (certificates made with certtool for each case) migrate
 * every page; mismatched keys, a wrong CA, an expired certificate, a
 * source without the certificate a destination requires, and plaintext on
 * one side only are refused on both sides (-EACCES for credentials,
 * -EPROTO for a peer that does not speak TLS), without a hang; a cut in
 * postcopy recovers over a new TLS session.
 *
 * In a build without TLS (-Dtls=disabled) those cases skip and
 * tls-disabled runs instead: both sides refuse TLS with -EOPNOTSUPP and
 * say why through the log callback.
 */
#include "mig-util.h"

#define LEN (1u << 20)
#define KEY_A "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c"
#define KEY_B "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct certs {
	char dir[64];
	char ca[128], other_ca[128], server[128], server_key[128], expired[128], expired_key[128];
	char client[128], client_key[128];
};

static void need_tls(void)
{
	if (!FL_HAVE_TLS)
		t_skip("built without TLS support (-Dtls=disabled): tls-disabled runs instead");
}

static void make_certs(struct certs *c)
{
	need_tls();
	t_need_certtool();
	t_tmpdir(c->dir, sizeof(c->dir), "/tmp/fl-migrate-tls");
	t_make_ca(c->dir, "ca");
	t_make_ca(c->dir, "otherca");
	t_make_cert(c->dir, "server", "ca", "tls_www_server", "expiration_days = 2");
	t_make_cert(c->dir, "client", "ca", "tls_www_client", "expiration_days = 2");
	t_make_cert(c->dir, "expired", "ca", "tls_www_server",
		    "activation_date = \"2020-01-01 00:00:00\"\\nexpiration_date = \"2020-02-01 00:00:00\"");
#define P(f, n) snprintf(c->f, sizeof(c->f), "%s/" n, c->dir)
	P(ca, "ca.pem");
	P(other_ca, "otherca.pem");
	P(server, "server.pem");
	P(server_key, "server.key");
	P(expired, "expired.pem");
	P(expired_key, "expired.key");
	P(client, "client.pem");
	P(client_key, "client.key");
#undef P
}

struct tls_case {
	const char *name;
	/* source */
	enum fl_tls_mode src_tls;
	const char *src_key;		/* PSK */
	int src_ca;			/* X.509: 0 ca, 1 otherca */
	bool src_cert;			/* X.509: present the client certificate */
	/* destination */
	enum fl_tls_mode dst_tls;
	const char *dst_key;
	bool dst_expired;		/* X.509: the expired certificate */
	bool dst_require;		/* X.509: require a client certificate (ca_file) */
	int expect_src, expect_dst;
};

static int test_tls(void *arg)
{
	const struct tls_case *tc = arg;
	struct fl_migrate_dest_opts o = { .sz = sizeof(o) };
	struct fl_migrate_dest *dst;
	struct certs certs = { 0 };
	struct m_src_cfg c = { 0 };
	struct m_dst d;
	uint64_t t0;
	int lfd, port, bulk, urgent, r;
	pid_t pid;

	if (tc->src_tls == FL_TLS_X509 || tc->dst_tls == FL_TLS_X509)
		make_certs(&certs);
	else
		need_tls();
	m_listen(&lfd, &port);
	c.addr = 0x5f9000000000ull;
	c.len = LEN;
	c.mem = FL_MEM_ANON;
	c.mode = FL_MIGRATE_POSTCOPY;
	snprintf(c.connect, sizeof(c.connect), "127.0.0.1:%d", port);
	c.timeout_ms = t_scaled_ms(3000);
	c.expect = tc->expect_src;
	c.expect_recoveries = tc->expect_src ? -1 : 0;
	c.tls.tls = tc->src_tls;
	if (tc->src_tls == FL_TLS_PSK) {
		c.tls.psk_identity = "migration-1";
		c.tls.psk_key_hex = tc->src_key;
	} else if (tc->src_tls == FL_TLS_X509) {
		c.tls.ca_file = tc->src_ca ? certs.other_ca : certs.ca;
		c.tls.server_name = "localhost";
		if (tc->src_cert) {
			c.tls.cert_file = certs.client;
			c.tls.key_file = certs.client_key;
		}
	}
	m_dst_init(&d, c.addr, c.len);
	pid = m_source_fork(&c);
	T_OK(fl_migrate_accept(lfd, t_scaled_ms(30000), &bulk, &urgent));
	o.bulk_fd = bulk;
	o.urgent_fd = urgent;
	o.resume = m_on_resume;
	o.resume_ctx = &d;
	o.timeout_ms = t_scaled_ms(3000);
	o.log = m_dst_log;
	o.log_ctx = &d;
	o.tls = tc->dst_tls;
	if (tc->dst_tls == FL_TLS_PSK) {
		o.psk_identity = "migration-1";
		o.psk_key_hex = tc->dst_key;
	} else if (tc->dst_tls == FL_TLS_X509) {
		o.cert_file = tc->dst_expired ? certs.expired : certs.server;
		o.key_file = tc->dst_expired ? certs.expired_key : certs.server_key;
		if (tc->dst_require)
			o.ca_file = certs.ca;
	}
	T_OK(fl_migrate_dest_new(&o, &dst));
	t0 = t_now_ns();
	T_OK(fl_migrate_dest_start(dst));
	r = fl_migrate_dest_wait(dst);
	T_ASSERT(r == tc->expect_dst, "destination: %d (%s), want %d (%s)", r, strerror(-r), tc->expect_dst,
		 strerror(-tc->expect_dst));
	if (r == 0) {
		for (size_t b = 0; b < d.nblk; b++)
			T_ASSERT(XXH3_64bits(d.mem + b * M_BLK, M_BLK) == d.hashes[b], "block %zu wrong", b);
	} else {
		/* Refused at once, not at a timeout; and nothing resumed. */
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(2500), "refused after %llu ms",
			 (unsigned long long)((t_now_ns() - t0) / 1000000));
		T_ASSERT(!atomic_load(&d.resumed));
	}
	/* The source's verdict (its exit status checks its result). */
	m_source_reap(pid);
	fl_migrate_dest_free(dst);
	close(lfd);
	close(bulk);
	close(urgent);
	if (certs.dir[0])
		t_rmtree(certs.dir);
	return T_PASS;
}

/* A cut during postcopy over TLS: the reconnection runs TLS again (and
 * HELLO inside it), and the migration completes with every page. */
static int test_tls_recovery(void *arg)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_dest *dst;
	struct m_src_cfg c = { 0 };
	struct m_relay relay;
	struct m_net net = { .psk_key_hex = KEY_A };
	struct m_reaccept ra;
	struct m_dst d;
	int lfd, port, bulk, urgent;
	pid_t pid;

	(void)arg;
	need_tls();
	m_listen(&lfd, &port);
	m_relay_start(&relay, port);
	atomic_store(&relay.bulk_rate, 2u << 20);
	c.addr = 0x5f9400000000ull;
	c.len = 8u << 20;
	c.mem = FL_MEM_ANON;
	c.mode = FL_MIGRATE_POSTCOPY;
	c.reconnect = M_RECONNECT_RELAY;
	c.recovery_ms = t_scaled_ms(10000);
	c.timeout_ms = t_scaled_ms(5000);
	c.small_sndbuf = true;
	c.expect_recoveries = 1;
	m_net_source(&net, &c, relay.port);
	m_dst_init(&d, c.addr, c.len);
	pid = m_relay_go(NULL, &c, &relay, lfd, &bulk, &urgent, &ra);
	dst = m_dst_start(&net, &d, bulk, urgent, &ra, t_scaled_ms(10000));
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	/* A page over the urgent channel, then the cut. */
	T_ASSERT(XXH3_64bits(d.mem + 100 * M_BLK, M_BLK) == d.hashes[100], "block 100 wrong");
	usleep(100000);
	m_relay_cut(&relay, 0);
	atomic_store(&relay.bulk_rate, 0);
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), 0);
	T_OK(fl_migrate_dest_stats(dst, &st));
	T_ASSERT_EQ(st.recoveries, 1);
	T_ASSERT(ra.calls >= 1);
	m_dst_check_all(&d);
	m_source_reap(pid);
	m_case_end(dst, &relay, lfd, bulk, urgent);
	return T_PASS;
}

/* Without TLS support both sides refuse TLS, and say why. */
static int test_disabled(void *arg)
{
	uint8_t *mem = t_map(FL_MEM_ANON, 4 * 4096, NULL);
	struct fl_migrate_range range = { mem, 4 * 4096, FL_MEM_ANON };
	struct fl_migrate_source *src = NULL;
	struct fl_migrate_dest *dst = NULL;

	(void)arg;
	if (FL_HAVE_TLS)
		t_skip("built with TLS support: the other tls cases test it");
	T_ASSERT_EQ(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1, .bulk_fd = 3,
		.urgent_fd = 4, .quiesce = quiesce_nop, .log = t_log_keep, .tls = FL_TLS_PSK,
		.psk_identity = "m", .psk_key_hex = KEY_A }, &src), -EOPNOTSUPP);
	T_ASSERT(src == NULL);
	T_ASSERT(strstr(t_logged, "-Dtls=disabled"), "logged: '%s'", t_logged);
	t_logged[0] = '\0';
	T_ASSERT_EQ(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = 3, .urgent_fd = 4,
		.resume = m_on_resume, .log = t_log_keep, .tls = FL_TLS_X509,
		.cert_file = "/nonexistent.pem", .key_file = "/nonexistent.key" }, &dst), -EOPNOTSUPP);
	T_ASSERT(dst == NULL);
	T_ASSERT(strstr(t_logged, "-Dtls=disabled"), "logged: '%s'", t_logged);
	return T_PASS;
}

/* Bad TLS options are refused by _new, before any connection. */
static int test_bad_tls_opts(void *arg)
{
	uint8_t *mem = t_map(FL_MEM_ANON, 4 * 4096, NULL);
	struct fl_migrate_range range = { mem, 4 * 4096, FL_MEM_ANON };
	struct fl_migrate_source *src = NULL;
	struct fl_migrate_dest *dst = NULL;

	(void)arg;
	need_tls();
	/* A PSK key that is not hex, a certificate that does not exist. */
	T_ASSERT_EQ(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1, .bulk_fd = 3,
		.urgent_fd = 4, .quiesce = quiesce_nop, .tls = FL_TLS_PSK, .psk_identity = "m",
		.psk_key_hex = "xyz" }, &src), -EINVAL);
	T_ASSERT_EQ(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = 3, .urgent_fd = 4,
		.resume = m_on_resume, .tls = FL_TLS_X509, .cert_file = "/nonexistent.pem",
		.key_file = "/nonexistent.key" }, &dst), -ENOENT);
	T_ASSERT(src == NULL && dst == NULL);
	return T_PASS;
}

static const struct tls_case tcases[] = {
	{ "psk", FL_TLS_PSK, KEY_A, 0, false, FL_TLS_PSK, KEY_A, false, false, 0, 0 },
	{ "x509", FL_TLS_X509, NULL, 0, false, FL_TLS_X509, NULL, false, false, 0, 0 },
	{ "x509-mutual", FL_TLS_X509, NULL, 0, true, FL_TLS_X509, NULL, false, true, 0, 0 },
	{ "psk-mismatch", FL_TLS_PSK, KEY_B, 0, false, FL_TLS_PSK, KEY_A, false, false, -EACCES, -EACCES },
	{ "wrong-ca", FL_TLS_X509, NULL, 1, false, FL_TLS_X509, NULL, false, false, -EACCES, -EACCES },
	{ "expired", FL_TLS_X509, NULL, 0, false, FL_TLS_X509, NULL, true, false, -EACCES, -EACCES },
	{ "no-client-cert", FL_TLS_X509, NULL, 0, false, FL_TLS_X509, NULL, false, true, -EACCES, -EACCES },
	{ "plain-to-tls", FL_TLS_NONE, NULL, 0, false, FL_TLS_PSK, KEY_A, false, false, -EPROTO, -EPROTO },
	{ "tls-to-plain", FL_TLS_PSK, KEY_A, 0, false, FL_TLS_NONE, NULL, false, false, -EPROTO, -EPROTO },
};

static const struct t_case cases[] = {
	{ "tls-psk", test_tls, (void *)&tcases[0], 60, 0 },
	{ "tls-x509", test_tls, (void *)&tcases[1], 60, 0 },
	{ "tls-x509-mutual", test_tls, (void *)&tcases[2], 60, 0 },
	{ "tls-psk-mismatch", test_tls, (void *)&tcases[3], 60, 0 },
	{ "tls-wrong-ca", test_tls, (void *)&tcases[4], 60, 0 },
	{ "tls-expired", test_tls, (void *)&tcases[5], 60, 0 },
	{ "tls-no-client-cert", test_tls, (void *)&tcases[6], 60, 0 },
	{ "tls-plain-to-tls", test_tls, (void *)&tcases[7], 60, 0 },
	{ "tls-tls-to-plain", test_tls, (void *)&tcases[8], 60, 0 },
	{ "tls-psk-recovery", test_tls_recovery, NULL, 60, 0 },
	{ "tls-bad-opts", test_bad_tls_opts, NULL, 30, 0 },
	{ "tls-disabled", test_disabled, NULL, 30, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
