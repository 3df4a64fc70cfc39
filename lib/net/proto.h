/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The page-server wire protocol, version 1: encoders and decoders. Pure
 * functions over byte buffers, no I/O, so they can be fuzzed. Decoders trust
 * nothing: every length, count, range, kind and reserved field is checked,
 * and a decoder never reads past the length it is given.
 *
 * All integers are little-endian. Every message is a 24-byte header and
 * `length` payload bytes:
 *
 *   u32 magic "FLPS"   u16 version (1)   u16 type   u32 length
 *   u32 id (request id; 0 for connection-level messages)
 *   u32 flags          u32 reserved (0)
 *
 * HELLO     client -> server, 32 bytes: u64 session (random, per client;
 *           the server counts clients by it), u32 role (0 urgent, 1 bulk),
 *           u32 features (bit 0 WRITE: the client asks to write; servers
 *           before the write extension took this field as reserved and
 *           answer a nonzero one with ERROR EPROTO, which is why a client
 *           sets it only when asked to write), u8 image_id[16] (all zero:
 *           any; else the server refuses another image with ERROR ESTALE).
 * HELLO_ACK server -> client, 32 + 16 * nregions bytes: u8 image_id[16],
 *           u32 page_size (4096), u32 nregions (1..65536), u32 max_pages
 *           (1..512, the largest READ the server takes), u32 features
 *           (bit 0 WRITE: this connection may send WRITE and FLUSH; set
 *           only when the HELLO asked and the server is writable, so a
 *           client that never asks never sees a nonzero field), then per
 *           region: u64 length (bytes, page multiple), u32 prot,
 *           u32 mem.
 * READ      client -> server, 16 bytes: u32 region, u32 npages (1..512),
 *           u64 first_page. Flag URGENT: a thread is blocked on it.
 * DATA      server -> client, answers the READ with the same id, in four
 *           parts so that it can be streamed while the server reads:
 *             prefix  u32 region, u32 npages, u64 first_page (the READ's)
 *             kinds   u8 kind[npages], zero-padded to a multiple of 8:
 *                     1 zero page (no bytes), 2 data page
 *             data    the bytes of the data pages, in order
 *             trailer u64 csum[ndata] (XXH3-64 of each data page, in
 *                     order), u32 status, u32 reserved
 *           status 0: the pages are good. Otherwise (an errno, e.g. EBADMSG
 *           for a page corrupt in the image, found mid-stream) the data is
 *           void and the request failed. length = 16 + pad8(npages) +
 *           ndata * (4096 + 8) + 8.
 * WRITE     client -> server, like a DATA of data pages only, in three
 *           parts: prefix u32 region, u32 npages (1..512), u64 first_page;
 *           the npages pages' bytes; trailer u64 csum[npages] (XXH3-64 of
 *           each page), u32 status (0), u32 reserved. length = 16 +
 *           npages * (4096 + 8) + 8. The server checks everything (a
 *           writable connection, the range, every checksum) before it
 *           writes anything, then writes the pages to its store and
 *           answers DONE, or ERROR for the request (EROFS not writable,
 *           ERANGE out of bounds, EBADMSG a checksum mismatch, or the
 *           store's error); nothing is written on an error but the
 *           store's own. Requests of one connection are served in order
 *           around a WRITE or FLUSH: READs that arrived before it are
 *           answered first, and those after it see its pages.
 * FLUSH     client -> server, empty: make every write acknowledged so far
 *           durable (the store's flush). Answered by DONE or ERROR.
 * DONE      server -> client, 16 bytes: the WRITE's prefix (u32 region,
 *           u32 npages, u64 first_page), all zero for a FLUSH.
 * ERROR     either way, 8 bytes: u32 errno (1..4095), u32 reserved. id is
 *           the failed request's, or 0 for the connection (then it closes).
 * BYE       either way, empty: an orderly close.
 */
#ifndef FL_PROTO_H
#define FL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FL_PROTO_MAGIC		0x53504c46u	/* "FLPS" as little-endian bytes */
#define FL_PROTO_VERSION	1
#define FL_PROTO_HDR_SIZE	24u
#define FL_PROTO_PAGE_SIZE	4096u
#define FL_PROTO_MAX_PAGES	512u		/* pages per READ / DATA */
#define FL_PROTO_MAX_REGIONS	65536u
#define FL_PROTO_MAX_PAYLOAD	(16u << 20)	/* no message is longer */

enum fl__proto_type {
	FL_MSG_HELLO = 1,
	FL_MSG_HELLO_ACK = 2,
	FL_MSG_READ = 3,
	FL_MSG_DATA = 4,
	FL_MSG_ERROR = 5,
	FL_MSG_BYE = 6,
	FL_MSG_WRITE = 7,
	FL_MSG_DONE = 8,
	FL_MSG_FLUSH = 9,
};

/* HELLO and HELLO_ACK features */
#define FL_PROTO_FEAT_WRITE	(1u << 0)
#define FL_PROTO_FEAT_MASK	FL_PROTO_FEAT_WRITE

/* header flags */
#define FL_MSG_F_URGENT		(1u << 0)	/* READ only */

enum fl__proto_role {
	FL_ROLE_URGENT = 0,
	FL_ROLE_BULK = 1,
};

#define FL_PROTO_HELLO_SIZE	32u
#define FL_PROTO_ACK_FIXED	32u
#define FL_PROTO_ACK_REGION	16u
#define FL_PROTO_READ_SIZE	16u
#define FL_PROTO_DATA_PREFIX	16u
#define FL_PROTO_KINDS_LEN(npages) (((size_t)(npages) + 7) / 8 * 8)
#define FL_PROTO_TRAILER_LEN(ndata) ((size_t)(ndata) * 8 + 8)
#define FL_PROTO_ERROR_SIZE	8u
#define FL_PROTO_DONE_SIZE	16u
#define FL_PROTO_WRITE_PREFIX	16u
#define FL_PROTO_WRITE_LEN(npages) \
	(FL_PROTO_WRITE_PREFIX + (size_t)(npages) * FL_PROTO_PAGE_SIZE + FL_PROTO_TRAILER_LEN(npages))
#define FL_PROTO_WRITE_MAX	FL_PROTO_WRITE_LEN(FL_PROTO_MAX_PAGES)
/* The largest DATA payload: every page of the largest READ with bytes. */
#define FL_PROTO_DATA_MAX \
	(FL_PROTO_DATA_PREFIX + FL_PROTO_MAX_PAGES + FL_PROTO_MAX_PAGES * (FL_PROTO_PAGE_SIZE + 8) + 8)

struct fl__proto_hdr {
	uint16_t version;
	uint16_t type;
	uint32_t length;
	uint32_t id;
	uint32_t flags;
};

struct fl__proto_hello {
	uint64_t session;
	uint32_t role;
	uint32_t features;		/* FL_PROTO_FEAT_* */
	uint8_t image_id[16];
};

struct fl__proto_ack {
	uint8_t image_id[16];
	uint32_t page_size;
	uint32_t nregions;
	uint32_t max_pages;
	uint32_t features;		/* FL_PROTO_FEAT_* */
	const uint8_t *regions;		/* nregions raw entries, see fl__proto_ack_region() */
};

struct fl__proto_region {
	uint64_t length;
	uint32_t prot;
	uint32_t mem;
};

struct fl__proto_read {
	uint32_t region;
	uint32_t npages;
	uint64_t first;
};

/* A DATA message, decoded in steps as its parts arrive. */
struct fl__proto_data {
	uint32_t region;
	uint32_t npages;
	uint64_t first;
	uint32_t ndata;			/* data pages (known from the length) */
};

/* Kinds in DATA (the image's FL_PAGE_ZERO / FL_PAGE_DATA). */
#define FL_PROTO_KIND_ZERO	1
#define FL_PROTO_KIND_DATA	2

/* ---- decoding: 0 or -errno ---------------------------------------------
 * -EPROTO: malformed (bad magic, unknown type, a reserved field set, a
 * length that does not fit the type, counts out of range);
 * -EPROTONOSUPPORT: another protocol version; -EMSGSIZE: a payload longer
 * than any message of its type may be.
 */
int fl__proto_hdr_decode(const uint8_t *buf, size_t len, struct fl__proto_hdr *ret);
int fl__proto_hello_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			   struct fl__proto_hello *ret);
int fl__proto_ack_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			 struct fl__proto_ack *ret);
/* Region i of a decoded ack (i < nregions); -EPROTO when it is malformed. */
int fl__proto_ack_region(const struct fl__proto_ack *ack, uint32_t i, struct fl__proto_region *ret);
int fl__proto_read_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_read *ret);
/* The first FL_PROTO_DATA_PREFIX bytes of a DATA payload (checked against h->length). */
int fl__proto_data_prefix(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_data *ret);
/*
 * The kinds (FL_PROTO_KINDS_LEN(npages) bytes) that follow the prefix:
 * every kind valid, the padding zero, and as many data pages as the length
 * says. Writes kinds[i].
 */
int fl__proto_data_kinds(const struct fl__proto_data *d, const uint8_t *p, size_t len, uint8_t *kinds);
/*
 * The trailer (FL_PROTO_TRAILER_LEN(ndata) bytes): writes csums[0..ndata)
 * and the status (0, or a positive errno: the request failed). -EPROTO
 * when the status or the reserved field are invalid.
 */
int fl__proto_data_trailer(const struct fl__proto_data *d, const uint8_t *p, size_t len, uint64_t *csums,
			   int *ret_status);
/*
 * A whole WRITE payload (h->length bytes): the prefix into *ret, a pointer
 * to the pages' bytes, and their checksums as sent into csums[npages].
 * -EPROTO when the length is not the one npages implies, a count is out
 * of range, or the trailer's status or reserved field is not 0. The
 * checksums are not compared here: that is the receiver's decision.
 */
int fl__proto_write_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			   struct fl__proto_read *ret, const uint8_t **ret_pages, uint64_t *csums);
/* DONE payload: the prefix it acknowledges. */
int fl__proto_done_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_read *ret);
/* ERROR payload: the errno value (positive). */
int fl__proto_error_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len, int *ret_errno);
int fl__proto_bye_decode(const struct fl__proto_hdr *h, size_t len);

/* ---- encoding: bytes written (header included), or -EINVAL / -ENOBUFS ---- */
int fl__proto_hdr_encode(uint8_t *buf, size_t cap, uint16_t type, uint32_t length, uint32_t id,
			 uint32_t flags);
int fl__proto_hello_encode(uint8_t *buf, size_t cap, const struct fl__proto_hello *m);
/* regions: nregions entries. */
int fl__proto_ack_encode(uint8_t *buf, size_t cap, const uint8_t image_id[16], uint32_t page_size,
			 uint32_t max_pages, const struct fl__proto_region *regions, uint32_t nregions);
int fl__proto_read_encode(uint8_t *buf, size_t cap, uint32_t id, bool urgent, const struct fl__proto_read *m);
/*
 * DATA header, prefix and kinds (the caller then sends the data pages and
 * the trailer). Returns the bytes written; *ret_length (optional) gets
 * the whole message's length, header included.
 */
int fl__proto_data_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m,
			  const uint8_t *kinds, size_t *ret_length);
/* The trailer for ndata checksums and a status (0 or an errno). */
int fl__proto_trailer_encode(uint8_t *buf, size_t cap, const uint64_t *csums, uint32_t ndata, int status);
int fl__proto_error_encode(uint8_t *buf, size_t cap, uint32_t id, int err);
/*
 * WRITE header and prefix (the caller then sends the pages and
 * fl__proto_trailer_encode(csums, npages, 0)).
 */
int fl__proto_write_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m);
/* DONE for a WRITE (m) or a FLUSH (m NULL). */
int fl__proto_done_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m);
int fl__proto_flush_encode(uint8_t *buf, size_t cap, uint32_t id);
/* HELLO_ACK with features: fl__proto_ack_encode() then this on its bytes. */
void fl__proto_ack_set_features(uint8_t *ack, uint32_t features);
int fl__proto_bye_encode(uint8_t *buf, size_t cap);

/* Checksum of one page, as DATA carries it (XXH3-64, like the image format). */
uint64_t fl__proto_page_csum(const void *page);
/* A name for logs. */
const char *fl__proto_type_name(uint16_t type);

#endif
