// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page server over TLS (GnuTLS): pre-shared keys and X.509
 * certificates (made with certtool for each case), restores that work, and
 * mismatched credentials that are refused (-EACCES) on both sides.
 *
 * In a build without TLS (-Dtls=disabled) those cases skip and
 * tls/disabled runs instead: every request for TLS fails with -EOPNOTSUPP
 * on both sides, says why through the log callback, and plain TCP still
 * serves.
 */
#include "net-util.h"
#include "fl-config.h"

#define KEY_A "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c"
#define KEY_B "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct tls_env {
	char dir[64], path[128];
	char ca[160], cert[160], key[160], other_ca[160], client_cert[160], client_key[160];
};

static void env_init(struct tls_env *t, bool certs)
{
	if (!FL_HAVE_TLS)
		t_skip("built without TLS support (-Dtls=disabled): tls/disabled runs instead");
	t_tmpdir(t->dir, sizeof(t->dir), "/tmp/fl-net");
	snprintf(t->path, sizeof(t->path), "%s/img", t->dir);
	n_write_image(t->path, 1, 4 * N_MIB, 41, SIZE_MAX);
	if (!certs)
		return;
	t_need_certtool();
	t_make_ca(t->dir, "ca");
	t_make_ca(t->dir, "otherca");
	t_make_cert(t->dir, "server", "ca", "tls_www_server", "expiration_days = 2");
	t_make_cert(t->dir, "client", "ca", "tls_www_client", "expiration_days = 2");
	snprintf(t->ca, sizeof(t->ca), "%s/ca.pem", t->dir);
	snprintf(t->other_ca, sizeof(t->other_ca), "%s/otherca.pem", t->dir);
	snprintf(t->cert, sizeof(t->cert), "%s/server.pem", t->dir);
	snprintf(t->key, sizeof(t->key), "%s/server.key", t->dir);
	snprintf(t->client_cert, sizeof(t->client_cert), "%s/client.pem", t->dir);
	snprintf(t->client_key, sizeof(t->client_key), "%s/client.key", t->dir);
}

/* Restore the whole region through the store and check every byte. */
static void restore_check(struct fl_store *st)
{
	size_t len = 4 * N_MIB;
	struct fl_engine *e = u_engine(0, 1);
	struct fl_region *r = u_region(e, &n_anon, len, st, 0);
	uint8_t *expect = n_expect(len, 41);

	U_CHECK(fl_region_addr(r), expect, len, U_PAGE);
	fl_region_free(r);
	fl_engine_free(e);
	munmap(expect, len);
}

static int connect_result(struct fl_remote_opts *ro)
{
	struct fl_store *st = NULL;
	int r;

	ro->timeout_ms = t_scaled_ms(3000);
	r = fl_store_remote_new(ro, &st);
	if (!r) {
		T_ASSERT(st);
		restore_check(st);
		fl_store_unref(st);
	}
	return r;
}

static int t_psk(void *arg)
{
	struct tls_env t;
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .tls = FL_TLS_PSK, .psk_identity = "node-1",
				     .psk_key_hex = KEY_A };
	struct fl_server_stats ss = { .sz = sizeof(ss) };
	struct fl_remote_opts ro;

	(void)arg;
	env_init(&t, false);
	n_server_start(&s, t.path, &so);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "node-1";
	ro.psk_key_hex = KEY_A;
	T_OK(connect_result(&ro));
	/* the wrong key */
	ro.psk_key_hex = KEY_B;
	T_ASSERT_EQ(connect_result(&ro), -EACCES);
	/* an unknown identity */
	ro.psk_key_hex = KEY_A;
	ro.psk_identity = "node-2";
	T_ASSERT_EQ(connect_result(&ro), -EACCES);
	/* no TLS at all, against a TLS server: never served */
	ro = n_ropts(s.addr, 0);
	T_ASSERT(connect_result(&ro) < 0);
	/* The server counts a refusal once its side of the handshake ends. */
	T_WAIT_FOR(fl_server_stats(s.srv, &ss) == 0 && ss.refused >= 3, 3000);
	T_OK(fl_server_stats(s.srv, &ss));
	T_ASSERT(ss.refused >= 3, "%llu refused", (unsigned long long)ss.refused);
	n_server_stop(&s);
	/* TLS against a plain server */
	n_server_start(&s, t.path, NULL);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "node-1";
	ro.psk_key_hex = KEY_A;
	T_ASSERT(connect_result(&ro) < 0);
	n_server_stop(&s);
	t_rmtree(t.dir);
	return T_PASS;
}

static int t_x509(void *arg)
{
	struct tls_env t;
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .tls = FL_TLS_X509 };
	struct fl_remote_opts ro;

	(void)arg;
	env_init(&t, true);
	so.cert_file = t.cert;
	so.key_file = t.key;
	n_server_start(&s, t.path, &so);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_X509;
	ro.ca_file = t.ca;
	/* verified against the CA, name checked against 127.0.0.1 */
	T_OK(connect_result(&ro));
	ro.server_name = "localhost";
	T_OK(connect_result(&ro));
	/* a name the certificate does not carry */
	ro.server_name = "pages.example.org";
	T_ASSERT_EQ(connect_result(&ro), -EACCES);
	/* names not checked: the chain still is */
	ro.server_name = "";
	T_OK(connect_result(&ro));
	/* a client that trusts another CA */
	ro.server_name = NULL;
	ro.ca_file = t.other_ca;
	T_ASSERT_EQ(connect_result(&ro), -EACCES);
	/* PSK against a certificate server */
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "node-1";
	ro.psk_key_hex = KEY_A;
	T_ASSERT(connect_result(&ro) < 0);
	n_server_stop(&s);
	t_rmtree(t.dir);
	return T_PASS;
}

/* With ca_file on the server, clients must present a certificate it signed. */
static int t_x509_mutual(void *arg)
{
	struct tls_env t;
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .tls = FL_TLS_X509 };
	struct fl_remote_opts ro;

	(void)arg;
	env_init(&t, true);
	so.cert_file = t.cert;
	so.key_file = t.key;
	so.ca_file = t.ca;
	n_server_start(&s, t.path, &so);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_X509;
	ro.ca_file = t.ca;
	/* no client certificate */
	T_ASSERT(connect_result(&ro) < 0);
	/* a certificate from the server's CA */
	ro.cert_file = t.client_cert;
	ro.key_file = t.client_key;
	T_OK(connect_result(&ro));
	n_server_stop(&s);
	/* the server trusts another CA for clients */
	so.ca_file = t.other_ca;
	n_server_start(&s, t.path, &so);
	ro.addr = s.addr;
	T_ASSERT(connect_result(&ro) < 0);
	n_server_stop(&s);
	t_rmtree(t.dir);
	return T_PASS;
}

/* TLS under load: threads, the bulk connection, and drops (re-handshakes). */
static int t_tls_drops(void *arg)
{
	size_t len = 4 * N_MIB;
	struct tls_env t;
	struct n_server s;
	struct fl_server_opts so = { .sz = sizeof(so), .tls = FL_TLS_PSK, .psk_identity = "n",
				     .psk_key_hex = KEY_A };
	struct fl_remote_opts ro;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *r, *rb;
	uint8_t *expect;
	uint64_t end;

	(void)arg;
	env_init(&t, false);
	n_server_start(&s, t.path, &so);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "n";
	ro.psk_key_hex = KEY_A;
	st = n_remote(&ro);
	e = u_engine(0, 2);
	r = u_region(e, &n_anon, len, st, 0);
	rb = u_region(e, &n_anon, len, st, FL_REGION_BACKGROUND);
	expect = n_expect(len, 41);
	u_read_threads(fl_region_addr(r), expect, U_PAGE, len / U_PAGE / 2, 3, 1);
	T_OK(fl_store_ctl(st, FL_REMOTE_CTL_DROP, NULL));
	u_read_threads(fl_region_addr(r), expect, U_PAGE, len / U_PAGE, 3, 1);
	end = t_deadline_ms(30000);
	while (fl_region_resolved_pages(rb) < len / U_PAGE && t_now_ns() < end)
		t_sleep_ms(5);
	U_CHECK(fl_region_addr(rb), expect, len, U_PAGE);
	n_log_rstats("client", st);
	T_ASSERT(n_rstats(st).reconnects >= 1);
	fl_region_free(r);
	fl_region_free(rb);
	fl_engine_free(e);
	fl_store_unref(st);
	n_server_stop(&s);
	t_rmtree(t.dir);
	return T_PASS;
}

static int t_disabled(void *arg)
{
	struct tls_env t;
	struct n_server s;
	struct fl_image *img;
	struct fl_server *srv = NULL;
	struct fl_store *st = NULL;
	struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0", .tls = FL_TLS_PSK,
				     .psk_identity = "node-1", .psk_key_hex = KEY_A,
				     .log = t_log_keep, .log_level = FL_LOG_ERROR };
	struct fl_remote_opts ro;

	(void)arg;
	if (FL_HAVE_TLS)
		t_skip("built with TLS support: the other tls/ cases test it");
	t_tmpdir(t.dir, sizeof(t.dir), "/tmp/fl-net");
	snprintf(t.path, sizeof(t.path), "%s/img", t.dir);
	n_write_image(t.path, 1, 4 * N_MIB, 41, SIZE_MAX);
	T_OK(fl_image_open(t.path, 0, &img));

	/* The server: PSK and X.509 are refused, and the log says why. */
	T_ASSERT_EQ(fl_server_new(img, &so, &srv), -EOPNOTSUPP);
	T_ASSERT(srv == NULL);
	T_ASSERT(strstr(t_logged, "-Dtls=disabled"), "logged: '%s'", t_logged);
	so.tls = FL_TLS_X509;
	so.psk_identity = so.psk_key_hex = NULL;
	so.cert_file = "/nonexistent/server.pem"; /* the missing TLS is the error, not the file */
	so.key_file = "/nonexistent/server.key";
	T_ASSERT_EQ(fl_server_new(img, &so, &srv), -EOPNOTSUPP);
	so.tls = (enum fl_tls_mode)7;
	T_ASSERT_EQ(fl_server_new(img, &so, &srv), -EINVAL);
	fl_image_close(img);

	/* The client, against a plain server: refused before connecting. */
	n_server_start(&s, t.path, NULL);
	ro = n_ropts(s.addr, 0);
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "node-1";
	ro.psk_key_hex = KEY_A;
	ro.log = t_log_keep;
	ro.log_level = FL_LOG_ERROR;
	t_logged[0] = '\0';
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -EOPNOTSUPP);
	T_ASSERT(st == NULL);
	T_ASSERT(strstr(t_logged, "-Dtls=disabled"), "logged: '%s'", t_logged);
	ro.tls = FL_TLS_X509;
	ro.psk_identity = ro.psk_key_hex = NULL;
	T_ASSERT_EQ(fl_store_remote_new(&ro, &st), -EOPNOTSUPP);

	/* Plain TCP is unaffected: the whole region, every byte. */
	ro = n_ropts(s.addr, 0);
	T_OK(connect_result(&ro));
	n_server_stop(&s);
	t_rmtree(t.dir);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "tls/psk", t_psk, NULL, 60 },
	{ "tls/x509", t_x509, NULL, 60 },
	{ "tls/x509-mutual", t_x509_mutual, NULL, 60 },
	{ "tls/drops", t_tls_drops, NULL, 60 },
	{ "tls/disabled", t_disabled, NULL, 60 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
