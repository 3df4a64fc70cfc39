// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The TLS backend of the page server's transport (see tls.h), over GnuTLS:
 * credentials (PSK or X.509, either side) and sessions on the non-blocking
 * sockets of link.c. Built only with TLS support (-Dtls, GnuTLS found);
 * tls-disabled.c stands in for it otherwise.
 *
 * GnuTLS is used in its non-blocking mode: on GNUTLS_E_AGAIN the link waits
 * in the direction it last tried. One thread may send while another
 * receives on the same session (GnuTLS allows exactly that).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

struct fl__tls_cfg {
	enum fl_tls_mode mode;
	bool server;
	bool require_client_cert;
	gnutls_psk_server_credentials_t psk_server;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_certificate_credentials_t x509;
	gnutls_priority_t prio;
	char identity[256];
	uint8_t key[64];
	unsigned key_len;
};

struct fl__tls_sess {
	gnutls_session_t s;
};

/* ---- TLS credentials ------------------------------------------------------ */

/* Map a GnuTLS error from loading credentials or a handshake to -errno. */
static int gnutls_errno(int e)
{
	switch (e) {
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	case GNUTLS_E_FILE_ERROR:
		return -ENOENT;
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PREMATURE_TERMINATION:
		return -ECONNRESET;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
	case GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET:
	case GNUTLS_E_RECORD_OVERFLOW:
		return -EPROTO; /* the peer does not speak TLS (or not this TLS) */
	case GNUTLS_E_BASE64_DECODING_ERROR:
	case GNUTLS_E_ASN1_DER_ERROR:
	case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
		return -EBADMSG;
	default:
		/* Verification failures, bad PSK binders, the peer's fatal
		 * alert, no common credentials: the credentials were refused. */
		return -EACCES;
	}
}

/* Check that a file is readable, for a precise error (GnuTLS only says "file error"). */
static int check_file(const char *path)
{
	int fd, r;

	if (!path || !*path)
		return -EINVAL;
	r = fl__open(path, O_RDONLY, &fd);
	if (r)
		return r;
	fl__close(fd);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_psk(struct fl__tls_cfg *c, const char *identity, const char *hex)
{
	size_t n;

	if (!identity || !*identity || strlen(identity) >= sizeof(c->identity) || !hex)
		return -EINVAL;
	for (const char *p = identity; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
	n = strlen(hex);
	if (n % 2 || n / 2 < 16 || n / 2 > sizeof(c->key))
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		c->key[i] = (uint8_t)(hi << 4 | lo);
	}
	c->key_len = (unsigned)(n / 2);
	snprintf(c->identity, sizeof(c->identity), "%s", identity);
	return 0;
}

static int psk_server_cb(gnutls_session_t s, const gnutls_datum_t *username, gnutls_datum_t *key)
{
	const struct fl__tls_cfg *c = gnutls_session_get_ptr(s);
	size_t idlen = strlen(c->identity);

	if (!username || username->size != idlen || memcmp(username->data, c->identity, idlen))
		return -1;
	key->data = gnutls_malloc(c->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, c->key, c->key_len);
	key->size = c->key_len;
	return 0;
}

int fl__tls_cfg_new(const struct fl__tls_params *p, bool server, struct fl__tls_cfg **ret)
{
	struct fl__tls_cfg *c;
	const char *prio;
	int r, e;

	if (!p || !ret)
		return -EINVAL;
	if (p->mode == FL_TLS_NONE) {
		*ret = NULL;
		return 0;
	}
	if (p->mode != FL_TLS_PSK && p->mode != FL_TLS_X509)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mode = p->mode;
	c->server = server;
	if (p->mode == FL_TLS_PSK) {
		gnutls_datum_t key;

		r = parse_psk(c, p->psk_identity, p->psk_key_hex);
		if (r)
			goto fail;
		key.data = c->key;
		key.size = c->key_len;
		if (server) {
			e = gnutls_psk_allocate_server_credentials(&c->psk_server);
			if (!e)
				gnutls_psk_set_server_credentials_function2(c->psk_server, psk_server_cb);
		} else {
			e = gnutls_psk_allocate_client_credentials(&c->psk_client);
			if (!e)
				e = gnutls_psk_set_client_credentials(c->psk_client, c->identity, &key,
								      GNUTLS_PSK_KEY_RAW);
		}
		/* Pre-shared keys only: no certificate key exchange to fall back to. */
		prio = "NORMAL:-KX-ALL:+ECDHE-PSK:+DHE-PSK:+PSK";
	} else {
		bool have_cert = p->cert_file || p->key_file;

		r = 0;
		if (server && (!p->cert_file || !p->key_file))
			r = -EINVAL;
		if (!r && have_cert && (!p->cert_file || !p->key_file))
			r = -EINVAL;
		if (!r && have_cert)
			r = check_file(p->cert_file);
		if (!r && have_cert)
			r = check_file(p->key_file);
		if (!r && p->ca_file)
			r = check_file(p->ca_file);
		if (r)
			goto fail;
		e = gnutls_certificate_allocate_credentials(&c->x509);
		if (!e && have_cert)
			e = gnutls_certificate_set_x509_key_file(c->x509, p->cert_file, p->key_file,
								 GNUTLS_X509_FMT_PEM);
		if (!e && p->ca_file) {
			e = gnutls_certificate_set_x509_trust_file(c->x509, p->ca_file, GNUTLS_X509_FMT_PEM);
			if (e == 0)
				e = GNUTLS_E_BASE64_DECODING_ERROR; /* no certificate in it */
			else if (e > 0)
				e = 0;
			c->require_client_cert = server;
		} else if (!e && !server) {
			e = gnutls_certificate_set_x509_system_trust(c->x509);
			e = e < 0 ? e : 0;
		}
		prio = "NORMAL";
	}
	if (e) {
		r = gnutls_errno(e);
		if (r == -EACCES)
			r = -EBADMSG; /* a file that loads but is not usable */
		goto fail;
	}
	e = gnutls_priority_init(&c->prio, prio, NULL);
	if (e) {
		r = gnutls_errno(e);
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	fl__tls_cfg_free(c);
	return r;
}

void fl__tls_cfg_free(struct fl__tls_cfg *c)
{
	if (!c)
		return;
	if (c->psk_server)
		gnutls_psk_free_server_credentials(c->psk_server);
	if (c->psk_client)
		gnutls_psk_free_client_credentials(c->psk_client);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	memset(c->key, 0, sizeof(c->key));
	free(c);
}

/* ---- sessions ---------------------------------------------------------------- */

static bool is_ip_literal(const char *name)
{
	struct in6_addr a6;
	struct in_addr a4;
	return inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
}


static int tls_setup(struct fl__link *l, struct fl__tls_cfg *c, bool server, const char *server_name)
{
	gnutls_session_t s;
	int e;

	l->tls = calloc(1, sizeof(*l->tls));
	if (!l->tls)
		return -ENOMEM;
	e = gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (e)
		return gnutls_errno(e);
	l->tls->s = s;
	gnutls_session_set_ptr(s, c);
	e = gnutls_priority_set(s, c->prio);
	if (!e && c->mode == FL_TLS_PSK)
		e = gnutls_credentials_set(s, GNUTLS_CRD_PSK,
					   server ? (void *)c->psk_server : (void *)c->psk_client);
	else if (!e)
		e = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->x509);
	if (e)
		return gnutls_errno(e);
	if (c->mode == FL_TLS_X509) {
		if (server && c->require_client_cert) {
			gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
			gnutls_session_set_verify_cert(s, NULL, 0);
		} else if (!server) {
			const char *name = server_name && *server_name ? server_name : NULL;
			if (name && !is_ip_literal(name))
				gnutls_server_name_set(s, GNUTLS_NAME_DNS, name, strlen(name));
			gnutls_session_set_verify_cert(s, name, 0);
		}
	}
	gnutls_transport_set_int(s, l->fd);
	return 0;
}


int fl__tls_handshake(struct fl__link *l, struct fl__tls_cfg *cfg, bool server, const char *server_name,
		      int stop_fd, uint64_t deadline_ns, const char **ret_why)
{
	int r = tls_setup(l, cfg, server, server_name);

	while (!r) {
		int e = gnutls_handshake(l->tls->s);
		if (e == 0)
			return 0;
		if (e == GNUTLS_E_AGAIN || e == GNUTLS_E_INTERRUPTED) {
			r = fl__wait_fd(l->fd, gnutls_record_get_direction(l->tls->s) ? POLLOUT : POLLIN,
					stop_fd, deadline_ns, 0);
			continue;
		}
		if (!gnutls_error_is_fatal(e))
			continue;
		r = gnutls_errno(e);
		if (ret_why)
			*ret_why = gnutls_strerror(e);
		/* Tell the peer why (one try: the socket is non-blocking), so
		 * that a client whose TLS 1.3 handshake already completed
		 * learns of the refusal instead of a bare close. */
		if (r == -EACCES)
			(void)gnutls_alert_send_appropriate(l->tls->s, e);
	}
	return r;
}

static int tls_io_errno(gnutls_session_t session, int e)
{
	switch (e) {
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_SESSION_EOF:
		return -ECONNRESET;
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		/* TLS 1.3: a server refuses the client's certificate after
		 * the client's handshake has completed; its alert comes here.
		 * Only a refusal of credentials is -EACCES: callers take that
		 * as final (the remote store stops reconnecting), which any
		 * other fatal alert (a peer's internal error) is not. */
		switch (gnutls_alert_get(session)) {
		case GNUTLS_A_BAD_CERTIFICATE:
		case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
		case GNUTLS_A_CERTIFICATE_REVOKED:
		case GNUTLS_A_CERTIFICATE_EXPIRED:
		case GNUTLS_A_CERTIFICATE_UNKNOWN:
		case GNUTLS_A_UNKNOWN_CA:
		case GNUTLS_A_ACCESS_DENIED:
		case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
		case GNUTLS_A_CERTIFICATE_REQUIRED:
		case GNUTLS_A_DECRYPT_ERROR:
			return -EACCES;
		default:
			return -EPROTO;
		}
	default:
		return -EPROTO; /* a bad record, a renegotiation we do not do, ... */
	}
}


ssize_t fl__tls_recv(struct fl__tls_sess *s, void *buf, size_t len)
{
	ssize_t n = gnutls_record_recv(s->s, buf, len);

	if (n >= 0)
		return n;
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
		return -EAGAIN;
	return tls_io_errno(s->s, (int)n);
}

ssize_t fl__tls_send(struct fl__tls_sess *s, const void *buf, size_t len)
{
	ssize_t n = gnutls_record_send(s->s, buf, len);

	if (n >= 0)
		return n;
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
		return -EAGAIN;
	return tls_io_errno(s->s, (int)n);
}

bool fl__tls_pending(struct fl__tls_sess *s)
{
	return gnutls_record_check_pending(s->s) > 0;
}

void fl__tls_sess_free(struct fl__tls_sess *s)
{
	if (s->s) {
		/* close_notify if the socket takes it now; never wait. */
		gnutls_bye(s->s, GNUTLS_SHUT_WR);
		gnutls_deinit(s->s);
	}
	free(s);
}
