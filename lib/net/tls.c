// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page server's transport (see tls.h): non-blocking TCP sockets with
 * deadlines, and GnuTLS sessions over them (PSK or X.509, either side).
 *
 * Sockets are non-blocking and every wait is a poll(2) on the socket and an
 * optional stop eventfd, so no thread ever blocks past its deadline or past
 * a stop. GnuTLS is used in its non-blocking mode the same way: on
 * GNUTLS_E_AGAIN, poll in the direction it last tried. One thread may send
 * while another receives on the same session (GnuTLS allows exactly that).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- waiting ------------------------------------------------------------- */

static int poll_timeout(uint64_t deadline_ns, uint64_t idle_end_ns)
{
	uint64_t end = deadline_ns, now;

	if (idle_end_ns && (!end || idle_end_ns < end))
		end = idle_end_ns;
	if (!end)
		return -1;
	now = fl__now_ns();
	if (end <= now)
		return 0;
	return (int)FL_MIN((end - now + 999999) / 1000000, (uint64_t)INT_MAX);
}

/*
 * Wait for `events` on fd. 0 when ready (errors and hang-ups count: the next
 * I/O reports them), -ETIMEDOUT, -ECANCELED.
 */
static int wait_fd(int fd, short events, int stop_fd, uint64_t deadline_ns, uint64_t idle_end_ns)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = events },
			{ .fd = stop_fd, .events = POLLIN },
		};
		int timeout = poll_timeout(deadline_ns, idle_end_ns);
		int r = fl__poll(p, stop_fd >= 0 ? 2 : 1, timeout);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		if (stop_fd >= 0 && p[1].revents)
			return -ECANCELED;
		if (p[0].revents)
			return 0;
		if (r == 0 && timeout >= 0 && poll_timeout(deadline_ns, idle_end_ns) == 0)
			return -ETIMEDOUT;
	}
}

int fl__sleep_until(uint64_t deadline_ns, int stop_fd)
{
	for (;;) {
		struct pollfd p = { .fd = stop_fd, .events = POLLIN };
		int timeout = poll_timeout(deadline_ns, 0);
		int r;

		if (timeout == 0)
			return 0;
		r = fl__poll(&p, stop_fd >= 0 ? 1 : 0, timeout);
		if (r == -EINTR)
			continue;
		if (r > 0)
			return -ECANCELED;
		if (r < 0)
			return r;
	}
}

int fl__random(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- addresses and sockets ------------------------------------------------ */

int fl__addr_split(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon, *h = addr;
	size_t hl;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - addr);
		if (memchr(addr, ':', hl))
			return -EINVAL; /* a bare IPv6 address: needs [brackets] */
	}
	if (hl >= hlen || strlen(colon + 1) >= plen || !colon[1] || strlen(colon + 1) > 5)
		return -EINVAL;
	for (const char *c = colon + 1; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	if (atoi(colon + 1) > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

static int eai_errno(int e, int sys_errno)
{
	switch (e) {
	case EAI_SYSTEM:
		return sys_errno ? -sys_errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_FAMILY:
	case EAI_SERVICE:
	case EAI_BADFLAGS:
		return -EINVAL;
	default:
		return -EHOSTUNREACH; /* no such host */
	}
}

static int resolve(const char *host, const char *port, bool passive, struct addrinfo **ret)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	int e;

	errno = 0;
	e = getaddrinfo(host && host[0] ? host : NULL, port, &hints, ret);
	return e ? eai_errno(e, errno) : 0;
}

static void tune_socket(int fd)
{
	int one = 1;
	/* Requests and page runs are latency bound: never wait to coalesce. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int fl__tcp_listen(const char *addr, int backlog, int *ret_fd, int *ret_port)
{
	char host[256], port[8];
	struct addrinfo *ai, *a;
	int r, err = -EADDRNOTAVAIL;

	r = fl__addr_split(addr, host, sizeof(host), port, sizeof(port));
	if (r)
		return r;
	r = resolve(host, port, true, &ai);
	if (r)
		return r == -EHOSTUNREACH ? -EADDRNOTAVAIL : r;
	/* Without a host, prefer the IPv6 wildcard: dual stack serves both. */
	for (int pass = 0; pass < 2; pass++) {
		for (a = ai; a; a = a->ai_next) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int fd, one = 1, zero = 0;

			if (!host[0] && (pass == 0) != (a->ai_family == AF_INET6))
				continue;
			if (host[0] && pass == 1)
				continue;
			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
			if (fd < 0) {
				err = -errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (a->ai_family == AF_INET6 && !host[0])
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, backlog) ||
			    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
				err = -errno;
				close(fd);
				continue;
			}
			freeaddrinfo(ai);
			*ret_fd = fd;
			*ret_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
							     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
			return 0;
		}
	}
	freeaddrinfo(ai);
	return err;
}

int fl__tcp_accept(int lfd, int *ret_fd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	tune_socket(fd);
	*ret_fd = fd;
	return 0;
}

static int connect_one(const struct addrinfo *a, uint64_t deadline_ns, int *ret_fd)
{
	socklen_t sl = sizeof(int);
	int fd, r, soerr = 0;

	fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
	if (fd < 0)
		return -errno;
	tune_socket(fd);
	if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
		goto done;
	if (errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	r = wait_fd(fd, POLLOUT, -1, deadline_ns, 0);
	if (r) {
		close(fd);
		return r;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
		r = soerr ? -soerr : -errno;
		close(fd);
		return r;
	}
done:
	*ret_fd = fd;
	return 0;
}

int fl__tcp_connect(const char *addr, uint64_t deadline_ns, int *ret_fd)
{
	char host[256], port[8];
	struct addrinfo *ai;
	int r, err = -EHOSTUNREACH;

	r = fl__addr_split(addr, host, sizeof(host), port, sizeof(port));
	if (r)
		return r;
	if (!host[0] || atoi(port) == 0)
		return -EINVAL;
	r = resolve(host, port, false, &ai);
	if (r)
		return r;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		err = connect_one(a, deadline_ns, ret_fd);
		if (!err || err == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(ai);
	return err;
}

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

/* ---- links ------------------------------------------------------------------ */

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

int fl__link_open(struct fl__link *l, int fd, struct fl__tls_cfg *cfg, bool server,
		  const char *server_name, int stop_fd, uint64_t deadline_ns, const char **ret_why)
{
	int r;

	if (ret_why)
		*ret_why = "";
	l->fd = fd;
	l->tls = NULL;
	if (!cfg)
		return 0;
	r = tls_setup(l, cfg, server, server_name);
	while (!r) {
		int e = gnutls_handshake(l->tls->s);
		if (e == 0)
			return 0;
		if (e == GNUTLS_E_AGAIN || e == GNUTLS_E_INTERRUPTED) {
			r = wait_fd(fd, gnutls_record_get_direction(l->tls->s) ? POLLOUT : POLLIN, stop_fd,
				    deadline_ns, 0);
			continue;
		}
		if (!gnutls_error_is_fatal(e))
			continue;
		r = gnutls_errno(e);
		if (ret_why)
			*ret_why = gnutls_strerror(e);
	}
	fl__link_close(l);
	return r;
}

static int tls_io_errno(int e)
{
	switch (e) {
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_SESSION_EOF:
		return -ECONNRESET;
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	default:
		return -EPROTO; /* a bad record, a renegotiation we do not do, ... */
	}
}

int fl__link_read(struct fl__link *l, void *buf, size_t len, int stop_fd, uint64_t deadline_ns,
		  unsigned idle_ms)
{
	uint8_t *p = buf;
	uint64_t idle_end = idle_ms ? fl__now_ns() + idle_ms * 1000000ull : 0;

	if (l->fd < 0)
		return -ENOTCONN;
	while (len) {
		ssize_t n;
		int r;

		if (l->tls) {
			n = gnutls_record_recv(l->tls->s, p, len);
			if (n == 0)
				return -ECONNRESET;
			if (n < 0) {
				if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED)
					return tls_io_errno((int)n);
				r = wait_fd(l->fd, POLLIN, stop_fd, deadline_ns, idle_end);
				if (r)
					return r;
				continue;
			}
		} else {
			n = recv(l->fd, p, len, 0);
			if (n == 0)
				return -ECONNRESET;
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					return -errno;
				r = wait_fd(l->fd, POLLIN, stop_fd, deadline_ns, idle_end);
				if (r)
					return r;
				continue;
			}
		}
		p += n;
		len -= (size_t)n;
		if (idle_ms)
			idle_end = fl__now_ns() + idle_ms * 1000000ull;
	}
	return 0;
}

int fl__link_write(struct fl__link *l, const void *buf, size_t len, int stop_fd, uint64_t deadline_ns)
{
	const uint8_t *p = buf;

	if (l->fd < 0)
		return -ENOTCONN;
	while (len) {
		ssize_t n;
		int r;

		if (l->tls) {
			n = gnutls_record_send(l->tls->s, p, len);
			if (n < 0) {
				if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED)
					return tls_io_errno((int)n);
				r = wait_fd(l->fd, POLLOUT, stop_fd, deadline_ns, 0);
				if (r)
					return r;
				continue;
			}
		} else {
			n = send(l->fd, p, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					return errno == EPIPE ? -ECONNRESET : -errno;
				r = wait_fd(l->fd, POLLOUT, stop_fd, deadline_ns, 0);
				if (r)
					return r;
				continue;
			}
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool fl__link_readable(struct fl__link *l)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN };

	if (l->fd < 0)
		return false;
	if (l->tls && gnutls_record_check_pending(l->tls->s) > 0)
		return true;
	return fl__poll(&p, 1, 0) > 0;
}

void fl__link_shutdown(struct fl__link *l)
{
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
}

void fl__link_close(struct fl__link *l)
{
	if (l->tls) {
		if (l->tls->s) {
			/* close_notify if the socket takes it now; never wait. */
			gnutls_bye(l->tls->s, GNUTLS_SHUT_WR);
			gnutls_deinit(l->tls->s);
		}
		free(l->tls);
		l->tls = NULL;
	}
	if (l->fd >= 0)
		fl__close(l->fd);
	l->fd = -1;
}
