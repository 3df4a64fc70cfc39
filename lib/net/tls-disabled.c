// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The TLS backend of a build without TLS support (-Dtls=disabled, or 'auto'
 * without GnuTLS): plain TCP only. fl__tls_cfg_new() refuses the TLS modes
 * with -EOPNOTSUPP, which fl_server_new() and fl_store_remote_new() return
 * (and log, with FL__TLS_DISABLED_WHY), so a caller asking for TLS never
 * gets a plain connection instead. No link ever holds a session, so the
 * session functions are never reached; they fail closed all the same.
 */
#include "tls.h"

int fl__tls_cfg_new(const struct fl__tls_params *p, bool server, struct fl__tls_cfg **ret)
{
	if (!p || !ret)
		return -EINVAL;
	switch (p->mode) {
	case FL_TLS_NONE:
		*ret = NULL;
		return 0;
	case FL_TLS_PSK:
	case FL_TLS_X509:
		return -EOPNOTSUPP;
	default:
		return -EINVAL;
	}
}

void fl__tls_cfg_free(struct fl__tls_cfg *cfg)
{
}

int fl__tls_handshake(struct fl__link *l, struct fl__tls_cfg *cfg, bool server, const char *server_name,
		      int stop_fd, uint64_t deadline_ns, const char **ret_why)
{
	return -EOPNOTSUPP;
}

ssize_t fl__tls_recv(struct fl__tls_sess *s, void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

ssize_t fl__tls_send(struct fl__tls_sess *s, const void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

bool fl__tls_pending(struct fl__tls_sess *s)
{
	return false;
}

void fl__tls_sess_free(struct fl__tls_sess *s)
{
}
