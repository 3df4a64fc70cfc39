/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manager protocol (faultlined <-> clients), version 1: encoders and
 * decoders, pure functions over byte buffers so they can be fuzzed. The
 * daemon trusts nothing a client sends: every length, count, kind, range
 * and reserved field is checked, and a decoder never reads past the length
 * it is given. faultlined(8) documents the protocol for other
 * implementations; this comment is the reference.
 *
 * Transport: a SOCK_SEQPACKET unix socket, one message per packet (so a
 * truncated or oversized message is visible as such), file descriptors as
 * SCM_RIGHTS on the packet that names them. Integers are little-endian.
 * Every message is a 16-byte header and `length` payload bytes:
 *
 *   u32 magic "FLMD"   u16 version (1)   u16 type   u32 length   u32 seq
 *
 * `seq` is the client's request number, echoed in the reply. Replies are
 * either the type named below or ERROR.
 *
 * HELLO    c->d, 16: u32 role (0 client, 1 observer: STATS only),
 *          u32 flags (0), u64 token (0: a new session; else the token of
 *          a session the client had with a faultlined that died: resume).
 * WELCOME  d->c, 24: u32 daemon pid, u32 max_ranges, u64 token (the
 *          session's: keep it to resume), u64 max_bytes (0: no limit).
 * OPEN     c->d, 12 + n: u32 kind (1 image: copied into the client's
 *          memory; 2 template: the client maps a shared page cache),
 *          u32 region, u16 name_len (1..255), u16 flags, then the image
 *          name (no NUL; relative to the daemon's image directory, no "..").
 *          Flag RESUME (templates): the packet carries the template memfd
 *          the client holds from an earlier daemon; its page cache is kept.
 * SOURCE   d->c, 24: u32 source id (>= 1), u32 mem (1 shmem, 2 hugetlb;
 *          0 for images), u64 length (bytes), u32 page_size, u32 reserved.
 *          For a template the packet carries a read-only fd of its memfd:
 *          map it MAP_PRIVATE.
 * ATTACH   c->d, 16 + 40 * n: u64 features (enabled on the uffd), u32
 *          nranges (1..FL_MGR_MAX_RANGES), u32 flags, then per range:
 *          u64 addr, u64 len, u64 offset (bytes into the source),
 *          u32 source (0: zero-filled memory), u16 mem (0 anon, 1 shmem,
 *          2 hugetlb), u16 flags, u64 reserved. Flag BEACON: a page of
 *          zero memory the client never touches; in a forked child the
 *          daemon writes a claim token there (see CLAIM). The first ATTACH of a session carries
 *          the uffd; later ones add ranges to it and carry no fd.
 * ATTACHED d->c, 8: u32 ranges now served, u32 reserved.
 * DETACH   c->d, 0. The daemon poisons what it did not deliver, lets the
 *          uffd go and replies DETACHED (0).
 * STATS    c->d, 0. STATS_JSON d->c: a JSON document (not NUL-terminated).
 * CLAIM    c->d, 8: u64 beacon token, from a forked child: the reply
 *          CLAIMED (8: u64 token of the child's new session) carries the
 *          child's uffd, which the daemon got from the FORK event.
 * ERROR    d->c, 8 + n: u32 errno (1..4095), u32 reserved, message text
 *          (n <= 200, no NUL). seq names the failed request; after an
 *          error with seq 0 the daemon closes the connection.
 *
 * Shared address spaces (fl_client_space_attach(3)), added to version 1:
 * a daemon that predates them answers these with an ERROR of seq 0.
 * SPACE_OPEN c->d, 16 + n: u64 version (0: the latest), u32 flags
 *          (RDONLY 1, PRIVATE 2), u16 name_len (1..47), u16 reserved,
 *          the space name ([A-Za-z0-9._-], no NUL). The daemon checks
 *          the peer's uid against the space directory's owner and mode.
 * SPACE    d->c, 16 + 24 * s + 56 * r: u64 version (the one opened),
 *          u16 segments s (1..FL_MGR_MAX_SEGMENTS), u16 roots r
 *          (0..64), u32 reserved; per segment: u64 base, u64 length,
 *          u32 mem (1 shmem, 2 hugetlb), u32 reserved; per root: 48 bytes
 *          of name (NUL-padded), u64 value.
 *          Each segment is then an OPEN of kind 3 (segment): name the
 *          space's, region the segment's index; its SOURCE carries the
 *          segment's page cache (read-only unless opened read-write and
 *          shared); RESUME brings back the one a client holds.
 * SPACE_CLOSE c->d, n: the space name. SPACE_CLOSED d->c, 0.
 * SPACE_COMMIT c->d, n: the space name. COMMITTED d->c, 8: u64 version.
 */
#ifndef FL_MGR_PROTO_H
#define FL_MGR_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FL_MGR_MAGIC		0x444d4c46u	/* "FLMD" as little-endian bytes */
#define FL_MGR_VERSION		1
#define FL_MGR_HDR_SIZE		16u
#define FL_MGR_MAX_PAYLOAD	(64u << 10)	/* no message is longer */
#define FL_MGR_MAX_RANGES	1024u		/* per ATTACH */
#define FL_MGR_MAX_NAME		255u
#define FL_MGR_MAX_ERRMSG	200u
#define FL_MGR_RANGE_SIZE	40u

enum fl__mgr_type {
	FL_MGR_HELLO = 1,
	FL_MGR_WELCOME = 2,
	FL_MGR_OPEN = 3,
	FL_MGR_SOURCE = 4,
	FL_MGR_ATTACH = 5,
	FL_MGR_ATTACHED = 6,
	FL_MGR_DETACH = 7,
	FL_MGR_DETACHED = 8,
	FL_MGR_STATS = 9,
	FL_MGR_STATS_JSON = 10,
	FL_MGR_CLAIM = 11,
	FL_MGR_CLAIMED = 12,
	FL_MGR_ERROR = 13,
	FL_MGR_SPACE_OPEN = 14,
	FL_MGR_SPACE = 15,
	FL_MGR_SPACE_CLOSE = 16,
	FL_MGR_SPACE_CLOSED = 17,
	FL_MGR_SPACE_COMMIT = 18,
	FL_MGR_COMMITTED = 19,
	FL_MGR_TYPE_MAX = 19,
};

enum fl__mgr_role {
	FL_MGR_ROLE_CLIENT = 0,
	FL_MGR_ROLE_OBSERVER = 1,
};

enum fl__mgr_source_kind {
	FL_MGR_SRC_IMAGE = 1,
	FL_MGR_SRC_TEMPLATE = 2,
	FL_MGR_SRC_SEGMENT = 3,
};

#define FL_MGR_SPACE_RDONLY	(1u << 0)
#define FL_MGR_SPACE_PRIVATE	(1u << 1)
#define FL_MGR_MAX_SPACE_NAME	47u		/* FL_SPACE_NAME_MAX */
#define FL_MGR_MAX_SEGMENTS	256u
#define FL_MGR_MAX_ROOTS	64u		/* FL_SPACE_ROOTS_MAX */

#define FL_MGR_OPEN_RESUME	(1u << 0)
#define FL_MGR_RANGE_BEACON	(1u << 0)
/* The beacon page in a forked child: magic, then the claim token. */
#define FL_MGR_BEACON_MAGIC	0x4e4f434145424c46ull	/* "FLBEACON" */

struct fl__mgr_hdr {
	uint32_t magic;
	uint16_t version, type;
	uint32_t length, seq;
};

struct fl__mgr_hello {
	uint32_t role, flags;
	uint64_t token;
};

struct fl__mgr_welcome {
	uint32_t pid, max_ranges;
	uint64_t token, max_bytes;
};

struct fl__mgr_open {
	uint32_t kind, region;
	uint16_t flags;
	char name[FL_MGR_MAX_NAME + 1];	/* NUL-terminated after decoding */
};

struct fl__mgr_source {
	uint32_t id, mem;
	uint64_t length;
	uint32_t page_size;
};

struct fl__mgr_space_open {
	uint64_t version;
	uint32_t flags;
	char name[FL_MGR_MAX_SPACE_NAME + 1];
};

struct fl__mgr_segment {
	uint64_t base, length;
	uint32_t mem;
};

struct fl__mgr_root {
	char name[FL_MGR_MAX_SPACE_NAME + 1];
	uint64_t value;
};

struct fl__mgr_space {
	uint64_t version;
	uint32_t nsegments, nroots;
	struct fl__mgr_segment segments[FL_MGR_MAX_SEGMENTS];
	struct fl__mgr_root roots[FL_MGR_MAX_ROOTS];
};

struct fl__mgr_range {
	uint64_t addr, len, offset;
	uint32_t source;
	uint16_t mem, flags;
};

struct fl__mgr_attach {
	uint64_t features;
	uint32_t nranges, flags;
	struct fl__mgr_range *ranges;	/* decode: points at caller storage */
};

/*
 * Header: encode into 16 bytes; decode checks magic, version, a known
 * type and length <= FL_MGR_MAX_PAYLOAD (-EPROTO, -EPROTONOSUPPORT for
 * another version, -EMSGSIZE for a length over the limit).
 */
void fl__mgr_hdr_encode(uint8_t *out, uint16_t type, uint32_t length, uint32_t seq);
int fl__mgr_hdr_decode(const uint8_t *in, size_t len, struct fl__mgr_hdr *ret);

/*
 * Payloads. Encoders return the payload length written to `out` (sized by
 * the caller: FL_MGR_MAX_PAYLOAD always suffices) or -EINVAL; decoders
 * return 0 or -EBADMSG (wrong length, bad field, reserved bits set).
 */
int fl__mgr_hello_encode(uint8_t *out, const struct fl__mgr_hello *m);
int fl__mgr_hello_decode(const uint8_t *p, size_t len, struct fl__mgr_hello *ret);
int fl__mgr_welcome_encode(uint8_t *out, const struct fl__mgr_welcome *m);
int fl__mgr_welcome_decode(const uint8_t *p, size_t len, struct fl__mgr_welcome *ret);
int fl__mgr_open_encode(uint8_t *out, const struct fl__mgr_open *m);
int fl__mgr_open_decode(const uint8_t *p, size_t len, struct fl__mgr_open *ret);
int fl__mgr_source_encode(uint8_t *out, const struct fl__mgr_source *m);
int fl__mgr_source_decode(const uint8_t *p, size_t len, struct fl__mgr_source *ret);
int fl__mgr_attach_encode(uint8_t *out, size_t cap, const struct fl__mgr_attach *m);
/* ranges: storage for FL_MGR_MAX_RANGES entries. */
int fl__mgr_attach_decode(const uint8_t *p, size_t len, struct fl__mgr_range *ranges,
			  struct fl__mgr_attach *ret);
int fl__mgr_u64_encode(uint8_t *out, uint64_t v);	/* ATTACHED, CLAIM, CLAIMED */
int fl__mgr_u64_decode(const uint8_t *p, size_t len, uint64_t *ret);
int fl__mgr_error_encode(uint8_t *out, int err, const char *msg);
/* msg: FL_MGR_MAX_ERRMSG + 1 bytes; ret_err > 0. */
int fl__mgr_error_decode(const uint8_t *p, size_t len, int *ret_err, char *msg);

/* The name-carrying decoders (SPACE_OPEN, SPACE_CLOSE, SPACE_COMMIT) say
 * -EINVAL for a well-formed message whose name is not a space name: the
 * daemon refuses that request, and the session goes on. */
int fl__mgr_space_open_encode(uint8_t *out, const struct fl__mgr_space_open *m);
int fl__mgr_space_open_decode(const uint8_t *p, size_t len, struct fl__mgr_space_open *ret);
int fl__mgr_space_encode(uint8_t *out, const struct fl__mgr_space *m);
int fl__mgr_space_decode(const uint8_t *p, size_t len, struct fl__mgr_space *ret);
/* SPACE_CLOSE, SPACE_COMMIT: a space name alone (out: 47 bytes). */
int fl__mgr_space_name_encode(uint8_t *out, const char *name);
int fl__mgr_space_name_decode(const uint8_t *p, size_t len, char *ret_name);
/* A space name: 1..47 bytes of [A-Za-z0-9._-], not "." or "..". */
bool fl__mgr_space_name_ok(const char *name);

/* An image name the daemon may open: relative, no "..", no "//", no
 * trailing "/", printable. */
bool fl__mgr_name_ok(const char *name);

/*
 * One packet: send header + payload (+ fd when fd >= 0); receive one into
 * buf (FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD bytes), checking that the
 * packet is exactly one message. recv: *ret_fd = the first fd passed (or
 * -1), extras closed; returns payload length, -ECONNRESET at EOF, -EPROTO
 * / -EMSGSIZE / -EBADMSG for a malformed packet, -errno.
 */
int fl__mgr_send(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd);
int fl__mgr_recv(int sock, uint8_t *buf, struct fl__mgr_hdr *ret_hdr, int *ret_fd, int timeout_ms);

#endif
