/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The page server's transport: TCP sockets (non-blocking, close-on-exec,
 * TCP_NODELAY, never SIGPIPE), optionally wrapped in TLS by GnuTLS with a
 * pre-shared key or X.509 certificates, for both ends.
 *
 * link.c has the sockets and the links; the TLS backend is tls.c (GnuTLS)
 * or, in a build without TLS (-Dtls=disabled), tls-disabled.c, whose
 * fl__tls_cfg_new() refuses FL_TLS_PSK and FL_TLS_X509 with -EOPNOTSUPP so
 * that no link ever carries a session.
 *
 * Every blocking operation takes an absolute deadline (CLOCK_MONOTONIC ns,
 * 0 = none) and an optional stop eventfd (-1 = none): it returns
 * -ETIMEDOUT at the deadline and -ECANCELED once the stop fd is readable.
 * The end of the stream is -ECONNRESET. These wrappers are the only code of
 * the server and the remote store that reads errno.
 */
#ifndef FL_TLS_H
#define FL_TLS_H

#include "kernel.h"
#include <faultline/remote.h>

struct fl__tls_cfg;
struct fl__tls_sess;

struct fl__tls_params {
	enum fl_tls_mode mode;
	const char *psk_identity;
	const char *psk_key_hex;
	const char *cert_file, *key_file, *ca_file;
};

/* A connection: a socket and, with TLS, its session. */
struct fl__link {
	int fd;				/* -1: closed */
	struct fl__tls_sess *tls;	/* NULL: plain TCP */
};

/* ---- addresses and sockets ------------------------------------------------ */

/* Split "host:port", "[v6]:port" or ":port" (host "" = any). -EINVAL if malformed. */
int fl__addr_split(const char *addr, char *host, size_t hlen, char *port, size_t plen);
/* Bind and listen (SO_REUSEADDR); *ret_port gets the bound port. */
int fl__tcp_listen(const char *addr, int backlog, int *ret_fd, int *ret_port);
/* Accept one connection (non-blocking, TCP_NODELAY). -EAGAIN when none is pending. */
int fl__tcp_accept(int lfd, int *ret_fd);
/* Connect to "host:port" by the deadline, trying every address it resolves to. */
int fl__tcp_connect(const char *addr, uint64_t deadline_ns, int *ret_fd);
/* Wait until the deadline or the stop fd. Returns 0 at the deadline, -ECANCELED on stop. */
int fl__sleep_until(uint64_t deadline_ns, int stop_fd);
/* Fill buf from getrandom(2). */
int fl__random(void *buf, size_t len);

/* ---- TLS credentials ----------------------------------------------------------- */

/*
 * Load credentials for one side. FL_TLS_NONE gives *ret = NULL (plain).
 * -EINVAL: missing or malformed parameters (PSK keys are 16 to 64 bytes of
 * hex); -ENOENT / -EACCES: a file cannot be read; -EBADMSG: it cannot be
 * parsed.
 */
int fl__tls_cfg_new(const struct fl__tls_params *p, bool server, struct fl__tls_cfg **ret);
void fl__tls_cfg_free(struct fl__tls_cfg *cfg);
/* What fl__tls_cfg_new()'s -EOPNOTSUPP means, for the servers' and stores' logs. */
#define FL__TLS_DISABLED_WHY "TLS requested, but libfaultline was built without TLS support (-Dtls=disabled)"

/* ---- the TLS backend, for link.c ------------------------------------------------ */

/*
 * Wait for `events` on fd. 0 when ready (errors and hang-ups count: the next
 * I/O reports them), -ETIMEDOUT at the deadline or at idle_end_ns (0 = none),
 * -ECANCELED once stop_fd is readable.
 */
int fl__wait_fd(int fd, short events, int stop_fd, uint64_t deadline_ns, uint64_t idle_end_ns);
/*
 * Start a session over l->fd (stored in l->tls, also on failure, for
 * fl__link_close()) and run the handshake by the deadline. *ret_why
 * (optional) gets the backend's description of a failure.
 */
int fl__tls_handshake(struct fl__link *l, struct fl__tls_cfg *cfg, bool server, const char *server_name,
		      int stop_fd, uint64_t deadline_ns, const char **ret_why);
/* Bytes moved (> 0), 0 at the end of the stream (recv), -EAGAIN: wait and retry, or -errno. */
ssize_t fl__tls_recv(struct fl__tls_sess *s, void *buf, size_t len);
ssize_t fl__tls_send(struct fl__tls_sess *s, const void *buf, size_t len);
/* Are decrypted bytes waiting in the session? */
bool fl__tls_pending(struct fl__tls_sess *s);
/* Send close_notify if the socket takes it now (never waits) and free the session. */
void fl__tls_sess_free(struct fl__tls_sess *s);

/* ---- links ------------------------------------------------------------------------- */

/*
 * Take ownership of a connected socket and, with cfg, run the TLS handshake
 * (server_name: the name the server's certificate must carry, NULL for no
 * name check). On failure the socket is closed and *ret_why (optional) gets
 * GnuTLS's description of the failure. -EACCES: the peer's credentials
 * were refused (or it refused ours); -EPROTO: not TLS.
 */
int fl__link_open(struct fl__link *l, int fd, struct fl__tls_cfg *cfg, bool server,
		  const char *server_name, int stop_fd, uint64_t deadline_ns, const char **ret_why);
/*
 * Read exactly len bytes. idle_ms (0 = none) bounds the time without any
 * byte arriving (-ETIMEDOUT), so a stalled peer is noticed before the deadline.
 */
int fl__link_read(struct fl__link *l, void *buf, size_t len, int stop_fd, uint64_t deadline_ns,
		  unsigned idle_ms);
/* Write all len bytes. */
int fl__link_write(struct fl__link *l, const void *buf, size_t len, int stop_fd, uint64_t deadline_ns);
/* Is at least one byte readable without waiting? */
bool fl__link_readable(struct fl__link *l);
/* Make blocked and future I/O on the link fail at once (thread-safe; keeps the fd). */
void fl__link_shutdown(struct fl__link *l);
/* Close (a TLS close_notify is attempted without waiting). Accepts a closed link. */
void fl__link_close(struct fl__link *l);

#endif
