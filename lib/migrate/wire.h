/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The migration wire protocol (described in <faultline/migrate.h>): the
 * header codec, validation of what a peer sends, and message I/O over one
 * channel. Everything a peer sends is checked here before either side acts
 * on it, so a hostile or broken peer gets one documented -errno.
 */
#ifndef FL_MIGRATE_WIRE_H
#define FL_MIGRATE_WIRE_H

#include "flutil.h"
#include "tls.h"

#include <pthread.h>
#include <sys/uio.h>

#define FL_MIG_MAGIC		0x474d4c46u	/* "FLMG" as little-endian bytes */
#define FL_MIG_VERSION		2
#define FL_MIG_HDR_SIZE		16u
#define FL_MIG_MAX_PAYLOAD	(64u << 20)
#define FL_MIG_PAGE_PREFIX	16u		/* u64 addr, u64 xxh3 */
#define FL_MIG_RANGE_SIZE	24u
#define FL_MIG_PAGE_ZERO	(1u << 0)	/* PAGE flag: a page of zeros, no bytes */
#define FL_MIG_SWITCH_NONE_STALE (1u << 0)	/* SWITCHOVER flag: no bitmap, nothing stale */

enum fl__mig_type {
	FL_MIG_LAYOUT = 1,
	FL_MIG_PAGE = 2,
	FL_MIG_ROUND = 3,
	FL_MIG_SWITCHOVER = 4,
	FL_MIG_REQUEST = 5,
	FL_MIG_RESUMED = 6,
	FL_MIG_DONE = 7,
	FL_MIG_CANCEL = 8,
	FL_MIG_ERROR = 9,
	FL_MIG_HELLO = 10,
	FL_MIG_HELLO_ACK = 11,
	FL_MIG_RECEIVED = 12,
	FL_MIG_TYPE_MAX = FL_MIG_RECEIVED,
};

#define FL_MIG_HELLO_SIZE	16u		/* u64 session, u32 channel, u32 epoch */
#define FL_MIG_CHAN_BULK	0u
#define FL_MIG_CHAN_URGENT	1u

struct fl__mig_hdr {
	uint16_t type;
	uint32_t length;
	uint32_t flags;
};

/* One side of one channel. Sends are serialised by send_lock (two threads
 * may answer on one channel); receives belong to one thread. */
struct fl__mig_chan {
	int fd;
	struct fl__tls_sess *tls;	/* NULL: plain TCP */
	bool owned;			/* the library closes fd (a reconnect's) */
	bool cut;			/* the last receive met EOF inside a message */
	bool peer_failed;		/* the last receive was the peer's ERROR */
	unsigned timeout_ms;		/* a send making no progress that long: -ETIMEDOUT (0: none) */
	int stop_fd;			/* readable: give up waiting (-ECANCELED) */
	int abort_fd;			/* readable: give up a blocked send (-EPIPE); -1 none */
	const char *name;		/* "bulk", "urgent": for the log */
	const struct fl__logger *log;
	pthread_mutex_t send_lock;
	uint8_t *buf;			/* the last received payload */
	size_t cap;
	/* Received bytes not yet parsed (the receiving thread's): one recv()
	 * brings many small messages (PAGE: 4 KiB and 32 bytes of framing)
	 * instead of two or three recv() each. rbuf[rpos, rlen) is unread. */
	uint8_t *rbuf;
	size_t rpos, rlen;
	/* The message being received must be complete by then (0: none yet):
	 * a peer that sends a byte now and then cannot hold a thread past
	 * its timeouts. */
	uint64_t msg_deadline_ns;
	_Atomic uint64_t bytes_sent;
	/* Destination: where a PAGE's bytes go instead of buf, so that they
	 * can be moved into place (UFFDIO_MOVE) rather than copied. Called
	 * with the PAGE's prefix once it is in buf; NULL: into buf. staged
	 * says where the last message's page bytes are (NULL: buf). */
	void *(*page_sink)(void *ctx, const uint8_t *prefix, uint32_t page_len);
	void *page_sink_ctx;
	void *staged;
};

void fl__mig_chan_init(struct fl__mig_chan *ch, int fd, int stop_fd, const char *name,
		       const struct fl__logger *log);
void fl__mig_chan_fini(struct fl__mig_chan *ch);
/* Drop the session (without closing fd unless owned) and take another fd
 * (-1: none); the next sends and receives use it. Not while another thread
 * does I/O on the channel. */
void fl__mig_chan_replace(struct fl__mig_chan *ch, int fd, bool owned);
/* Make a socket non-blocking (the channel code and GnuTLS need it). */
int fl__mig_set_nonblock(int fd);
/* Make blocked and future I/O on the channel fail (thread-safe). */
void fl__mig_chan_shutdown(struct fl__mig_chan *ch);
/* Is a byte (or a decrypted record, or a received byte not parsed yet)
 * ready without waiting? Only the receiving thread may ask. */
bool fl__mig_chan_readable(struct fl__mig_chan *ch);
/*
 * Run the TLS handshake on the channel's fd (the source is the client, the
 * destination the server) by deadline_ns. 0, -EACCES (credentials refused
 * either way), -EPROTO (the peer does not speak TLS), -ETIMEDOUT,
 * -ECONNRESET; logged with the cause.
 */
int fl__mig_chan_tls(struct fl__mig_chan *ch, struct fl__tls_cfg *cfg, bool server,
		     const char *server_name, uint64_t deadline_ns);
/* Is err, seen on ch, a cut connection (recoverable after switchover) rather
 * than a refusal? EOF, reset, -EPIPE, a timeout, EOF inside a message. */
bool fl__mig_is_cut(const struct fl__mig_chan *ch, int err);

struct fl__mig_hello {
	uint64_t session;
	uint32_t channel;
	uint32_t epoch;
};
/* Send HELLO on ch and wait timeout_ms for its HELLO_ACK, which must echo it
 * (-EPROTO otherwise). */
int fl__mig_hello_client(struct fl__mig_chan *ch, const struct fl__mig_hello *hello, unsigned timeout_ms);
/* Receive a HELLO (timeout_ms) into *ret (unchecked), for the caller to check
 * and answer with fl__mig_hello_ack(). */
int fl__mig_hello_recv(struct fl__mig_chan *ch, unsigned timeout_ms, struct fl__mig_hello *ret);
int fl__mig_hello_ack(struct fl__mig_chan *ch, const struct fl__mig_hello *hello);

/* Send one message: header, then the bytes of a and b. 0 or -errno
 * (-ECONNRESET for a peer that closed; -EPIPE when abort_fd became
 * readable while the send waited: the message is then cut short). */
int fl__mig_send(struct fl__mig_chan *ch, uint16_t type, uint32_t flags,
		 const void *a, size_t a_len, const void *b, size_t b_len);
/* Write a message header for a payload of length bytes (for a batch of
 * messages sent with fl__mig_send_iov()). */
void fl__mig_put_hdr(uint8_t *hdr, uint16_t type, uint32_t length, uint32_t flags);
/* Send iovecs holding whole messages, in one go as far as the socket
 * takes them (iov is modified). Errors as fl__mig_send(). */
int fl__mig_send_iov(struct fl__mig_chan *ch, struct iovec *iov, int cnt);
/* Send ERROR(err) once, without waiting, and ignore the outcome: the peer
 * may already be gone. */
void fl__mig_send_error(struct fl__mig_chan *ch, int err);

/*
 * Receive one message into ch->buf (valid until the next receive). Waits at
 * most timeout_ms (0: forever) for its first byte: -ETIMEDOUT; stop_fd
 * readable: -ECANCELED. The header is checked (magic, version: -EPROTO;
 * type known: -EPROTO; length within FL_MIG_MAX_PAYLOAD: -EBADMSG); EOF
 * before a header -ECONNRESET, inside a message -EBADMSG. An ERROR message
 * is returned as its -errno (-EPROTO when malformed). Each refusal is logged.
 */
int fl__mig_recv(struct fl__mig_chan *ch, unsigned timeout_ms, struct fl__mig_hdr *ret_hdr);

/* Log a refusal with its cause and return err. */
__attribute__((format(printf, 3, 4)))
int fl__mig_refuse(struct fl__mig_chan *ch, int err, const char *fmt, ...);

/* XXH3-64 of a page's bytes. */
uint64_t fl__mig_csum(const void *page, size_t len);
bool fl__mig_is_zero(const void *page, size_t len);

static inline void fl__mig_put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void fl__mig_put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t fl__mig_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}
static inline uint64_t fl__mig_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The layout both sides agree on: ranges in order, pages numbered across
 * them (bit i of a SWITCHOVER bitmap). */
struct fl__mig_range {
	uint64_t start, len;
	enum fl_mem_type mem;
	uint32_t page_size;
	uint64_t first;			/* index of the range's first page */
	uint64_t npages;
	int memfd;			/* destination: its memfd (-1: anon) */
	struct fl_watch *watch;		/* source: its watch (NULL: none) */
};

/* The index of the page at addr, or -ERANGE (outside, or misaligned). */
int64_t fl__mig_page_index(const struct fl__mig_range *ranges, unsigned n, uint64_t addr,
			   unsigned *ret_range);
/* Check a layout's ranges (page size matches the type, aligned, ordered,
 * not overlapping, not wrapping) and number their pages. -ERANGE / -EINVAL. */
int fl__mig_layout_check(struct fl__mig_range *ranges, unsigned n, uint64_t *ret_total);

#endif
