/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fault-injecting TCP relay: the core of `faultline proxy` (cli/proxy.c),
 * also run in-process by `faultline bench migrate` to put a delay on the
 * path of a migration. Each accepted connection is relayed to one target
 * in both directions by a thread of its own, through a delay line per
 * direction: every chunk read is stamped with the time it may be written
 * (read time + delay), so a delay adds latency without capping throughput.
 *
 * Faults: a per-chunk retransmission stall (with probability loss_pct the
 * chunk, and so everything queued after it, waits RELAY_STALL_NS more: what
 * a lost segment costs a TCP stream), a rate per direction (a token
 * bucket), a reset of every open connection on demand (relay_cut()), and a
 * reset of a connection once cut_after bytes were relayed (both directions
 * counted together; those bytes are delivered first).
 *
 * A reset closes both sockets with SO_LINGER 0: each peer sees ECONNRESET
 * (or EOF). The listening socket stays open: later connections are relayed.
 */
#ifndef FL_CLI_RELAY_H
#define FL_CLI_RELAY_H

#include <stdint.h>
#include <sys/socket.h>

/* The extra wait of a chunk "lost" by loss_pct: a TCP retransmission
 * timeout's minimum (TCP_RTO_MIN). */
#define RELAY_STALL_NS (200ull * 1000000ull)

struct relay;

struct relay_opts {
	struct sockaddr_storage listen_addr;	/* port 0: an ephemeral port */
	socklen_t listen_len;
	struct sockaddr_storage to_addr;
	socklen_t to_len;
	uint64_t delay_ns;			/* per direction */
	double loss_pct;			/* 0..100, per chunk */
	uint64_t rate;				/* bytes per second per direction; 0: unlimited */
	uint64_t cut_after;			/* bytes per connection; 0: never */
	uint64_t seed;				/* of the stalls' pseudo-random draws */
};

struct relay_stats {
	uint64_t bytes_up;			/* accepted side -> target */
	uint64_t bytes_down;			/* target -> accepted side */
	uint64_t connections;			/* accepted */
	uint64_t cuts;				/* connections reset by relay_cut() or cut_after */
	uint64_t stalls;			/* chunks held by loss_pct */
	uint64_t refused;			/* the target refused: the client was reset */
};

/* "ADDR:PORT" or "[V6ADDR]:PORT" (ADDR may be a host name): 0 or -EINVAL. */
int relay_parse_addr(const char *spec, struct sockaddr_storage *ret_addr, socklen_t *ret_len);
/* An address as "ADDR:PORT" ("[ADDR]:PORT" for IPv6) into buf. */
const char *relay_format_addr(const struct sockaddr_storage *addr, char *buf, size_t len);

/* Bind and listen (in the calling thread's network namespace); nothing
 * runs yet. 0 or -errno (-EADDRINUSE...). */
int relay_new(const struct relay_opts *opts, struct relay **ret_relay);
/* The address it listens on (the real port when opts asked for 0). */
void relay_local(const struct relay *relay, struct sockaddr_storage *ret_addr);
/* Start accepting (a thread; connections get threads of their own, all in
 * the calling thread's network namespace). 0 or -errno. */
int relay_start(struct relay *relay);
/* Reset every open connection, both sides (any thread, not a signal
 * handler). Returns how many were open. */
unsigned relay_cut(struct relay *relay);
void relay_stats(const struct relay *relay, struct relay_stats *ret_stats);
/* Stop: reset open connections, join every thread, close. Accepts NULL. */
void relay_free(struct relay *relay);

#endif
