// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page-server wire protocol (see proto.h): encoders and decoders over
 * byte buffers. No I/O, no allocation, no global state: the decoders are
 * what a hostile peer talks to, and they are fuzzed (test/fuzz).
 */
#include "proto.h"
#include "le.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

/* The payload length a message of this type may have: [min, max]. */
static int length_bounds(uint16_t type, uint32_t *min, uint32_t *max)
{
	switch (type) {
	case FL_MSG_HELLO:
		*min = *max = FL_PROTO_HELLO_SIZE;
		return 0;
	case FL_MSG_HELLO_ACK:
		*min = FL_PROTO_ACK_FIXED + FL_PROTO_ACK_REGION;
		*max = FL_PROTO_ACK_FIXED + FL_PROTO_MAX_REGIONS * FL_PROTO_ACK_REGION;
		return 0;
	case FL_MSG_READ:
		*min = *max = FL_PROTO_READ_SIZE;
		return 0;
	case FL_MSG_DATA:
		*min = FL_PROTO_DATA_PREFIX + FL_PROTO_KINDS_LEN(1) + FL_PROTO_TRAILER_LEN(0);
		*max = FL_PROTO_DATA_MAX;
		return 0;
	case FL_MSG_ERROR:
		*min = *max = FL_PROTO_ERROR_SIZE;
		return 0;
	case FL_MSG_BYE:
	case FL_MSG_FLUSH:
		*min = *max = 0;
		return 0;
	case FL_MSG_WRITE:
		*min = FL_PROTO_WRITE_LEN(1);
		*max = FL_PROTO_WRITE_MAX;
		return 0;
	case FL_MSG_DONE:
		*min = *max = FL_PROTO_DONE_SIZE;
		return 0;
	}
	return -EPROTO;
}

int fl__proto_hdr_decode(const uint8_t *buf, size_t len, struct fl__proto_hdr *ret)
{
	struct fl__proto_hdr h;
	uint32_t min, max;

	if (!buf || !ret || len < FL_PROTO_HDR_SIZE)
		return -EPROTO;
	if (ld32(buf) != FL_PROTO_MAGIC)
		return -EPROTO;
	h.version = ld16(buf + 4);
	h.type = ld16(buf + 6);
	h.length = ld32(buf + 8);
	h.id = ld32(buf + 12);
	h.flags = ld32(buf + 16);
	if (h.version != FL_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (ld32(buf + 20) != 0)
		return -EPROTO;
	if (length_bounds(h.type, &min, &max))
		return -EPROTO;
	if (h.length > max)
		return h.length > FL_PROTO_MAX_PAYLOAD ? -EMSGSIZE : -EPROTO;
	if (h.length < min)
		return -EPROTO;
	if (h.flags & ~(h.type == FL_MSG_READ ? FL_MSG_F_URGENT : 0u))
		return -EPROTO;
	/* Only replies and requests carry ids; a HELLO/ACK/BYE carries 0. */
	if ((h.type == FL_MSG_HELLO || h.type == FL_MSG_HELLO_ACK || h.type == FL_MSG_BYE) && h.id)
		return -EPROTO;
	if ((h.type == FL_MSG_READ || h.type == FL_MSG_DATA || h.type == FL_MSG_WRITE || h.type == FL_MSG_DONE ||
	     h.type == FL_MSG_FLUSH) && !h.id)
		return -EPROTO;
	*ret = h;
	return 0;
}

static bool payload_ok(const struct fl__proto_hdr *h, uint16_t type, const uint8_t *p, size_t len)
{
	return h && h->type == type && (p || !len) && len == h->length;
}

int fl__proto_hello_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			   struct fl__proto_hello *ret)
{
	if (!ret || !payload_ok(h, FL_MSG_HELLO, p, len) || len != FL_PROTO_HELLO_SIZE)
		return -EPROTO;
	ret->session = ld64(p);
	ret->role = ld32(p + 8);
	ret->features = ld32(p + 12);
	if (ret->role > FL_ROLE_BULK || (ret->features & ~FL_PROTO_FEAT_MASK))
		return -EPROTO;
	memcpy(ret->image_id, p + 16, 16);
	return 0;
}

int fl__proto_ack_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			 struct fl__proto_ack *ret)
{
	uint32_t n;

	if (!ret || !payload_ok(h, FL_MSG_HELLO_ACK, p, len) || len < FL_PROTO_ACK_FIXED)
		return -EPROTO;
	n = ld32(p + 20);
	if (n < 1 || n > FL_PROTO_MAX_REGIONS || len != FL_PROTO_ACK_FIXED + (size_t)n * FL_PROTO_ACK_REGION)
		return -EPROTO;
	memcpy(ret->image_id, p, 16);
	ret->page_size = ld32(p + 16);
	ret->nregions = n;
	ret->max_pages = ld32(p + 24);
	ret->features = ld32(p + 28);
	if (ret->page_size != FL_PROTO_PAGE_SIZE || ret->max_pages < 1 ||
	    ret->max_pages > FL_PROTO_MAX_PAGES || (ret->features & ~FL_PROTO_FEAT_MASK))
		return -EPROTO;
	ret->regions = p + FL_PROTO_ACK_FIXED;
	return 0;
}

int fl__proto_ack_region(const struct fl__proto_ack *ack, uint32_t i, struct fl__proto_region *ret)
{
	const uint8_t *e;

	if (!ack || !ret || i >= ack->nregions)
		return -EPROTO;
	e = ack->regions + (size_t)i * FL_PROTO_ACK_REGION;
	ret->length = ld64(e);
	ret->prot = ld32(e + 8);
	ret->mem = ld32(e + 12);
	/* 2^52 bytes (4 PiB) is far past any image; it keeps offsets from overflowing. */
	if (ret->length % ack->page_size || ret->length > (1ull << 52) || ret->mem > 2)
		return -EPROTO;
	return 0;
}

int fl__proto_read_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_read *ret)
{
	if (!ret || !payload_ok(h, FL_MSG_READ, p, len) || len != FL_PROTO_READ_SIZE)
		return -EPROTO;
	ret->region = ld32(p);
	ret->npages = ld32(p + 4);
	ret->first = ld64(p + 8);
	if (ret->npages < 1 || ret->npages > FL_PROTO_MAX_PAGES || ret->first > (1ull << 52))
		return -EPROTO;
	return 0;
}

int fl__proto_data_prefix(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_data *ret)
{
	uint64_t fixed, rest;

	if (!h || !ret || h->type != FL_MSG_DATA || !p || len < FL_PROTO_DATA_PREFIX)
		return -EPROTO;
	ret->region = ld32(p);
	ret->npages = ld32(p + 4);
	ret->first = ld64(p + 8);
	if (ret->npages < 1 || ret->npages > FL_PROTO_MAX_PAGES || ret->first > (1ull << 52))
		return -EPROTO;
	fixed = FL_PROTO_DATA_PREFIX + FL_PROTO_KINDS_LEN(ret->npages) + FL_PROTO_TRAILER_LEN(0);
	if (h->length < fixed)
		return -EPROTO;
	/* Each data page brings its bytes and its checksum. */
	rest = h->length - fixed;
	if (rest % (FL_PROTO_PAGE_SIZE + 8) || rest / (FL_PROTO_PAGE_SIZE + 8) > ret->npages)
		return -EPROTO;
	ret->ndata = (uint32_t)(rest / (FL_PROTO_PAGE_SIZE + 8));
	return 0;
}

int fl__proto_data_kinds(const struct fl__proto_data *d, const uint8_t *p, size_t len, uint8_t *kinds)
{
	uint32_t ndata = 0;

	if (!d || !p || !kinds || d->npages < 1 || d->npages > FL_PROTO_MAX_PAGES ||
	    len != FL_PROTO_KINDS_LEN(d->npages))
		return -EPROTO;
	for (uint32_t i = 0; i < d->npages; i++) {
		if (p[i] == FL_PROTO_KIND_DATA)
			ndata++;
		else if (p[i] != FL_PROTO_KIND_ZERO)
			return -EPROTO;
		kinds[i] = p[i];
	}
	for (size_t i = d->npages; i < len; i++)
		if (p[i])
			return -EPROTO;
	return ndata == d->ndata ? 0 : -EPROTO;
}

int fl__proto_data_trailer(const struct fl__proto_data *d, const uint8_t *p, size_t len, uint64_t *csums,
			   int *ret_status)
{
	uint32_t status;

	if (!d || !p || !ret_status || (!csums && d->ndata) || d->ndata > FL_PROTO_MAX_PAGES ||
	    len != FL_PROTO_TRAILER_LEN(d->ndata))
		return -EPROTO;
	for (uint32_t i = 0; i < d->ndata; i++)
		csums[i] = ld64(p + 8 * (size_t)i);
	status = ld32(p + 8 * (size_t)d->ndata);
	if (status > 4095 || ld32(p + 8 * (size_t)d->ndata + 4) != 0)
		return -EPROTO;
	*ret_status = (int)status;
	return 0;
}

int fl__proto_write_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			   struct fl__proto_read *ret, const uint8_t **ret_pages, uint64_t *csums)
{
	struct fl__proto_read m;
	struct fl__proto_data d;
	size_t at;
	int status;

	if (!ret || !ret_pages || !csums || !payload_ok(h, FL_MSG_WRITE, p, len) || len < FL_PROTO_WRITE_PREFIX)
		return -EPROTO;
	m.region = ld32(p);
	m.npages = ld32(p + 4);
	m.first = ld64(p + 8);
	if (m.npages < 1 || m.npages > FL_PROTO_MAX_PAGES || m.first > (1ull << 52) ||
	    len != FL_PROTO_WRITE_LEN(m.npages))
		return -EPROTO;
	/* The trailer is DATA's, with every page a data page. */
	d = (struct fl__proto_data){ .region = m.region, .npages = m.npages, .first = m.first, .ndata = m.npages };
	at = FL_PROTO_WRITE_PREFIX + (size_t)m.npages * FL_PROTO_PAGE_SIZE;
	if (fl__proto_data_trailer(&d, p + at, len - at, csums, &status) || status)
		return -EPROTO;
	*ret = m;
	*ret_pages = p + FL_PROTO_WRITE_PREFIX;
	return 0;
}

int fl__proto_done_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len,
			  struct fl__proto_read *ret)
{
	if (!ret || !payload_ok(h, FL_MSG_DONE, p, len) || len != FL_PROTO_DONE_SIZE)
		return -EPROTO;
	ret->region = ld32(p);
	ret->npages = ld32(p + 4);
	ret->first = ld64(p + 8);
	/* npages 0 is a FLUSH's (then everything is 0). */
	if (ret->npages > FL_PROTO_MAX_PAGES || ret->first > (1ull << 52) ||
	    (!ret->npages && (ret->region || ret->first)))
		return -EPROTO;
	return 0;
}

int fl__proto_error_decode(const struct fl__proto_hdr *h, const uint8_t *p, size_t len, int *ret_errno)
{
	uint32_t e;

	if (!ret_errno || !payload_ok(h, FL_MSG_ERROR, p, len) || len != FL_PROTO_ERROR_SIZE)
		return -EPROTO;
	e = ld32(p);
	if (e < 1 || e > 4095 || ld32(p + 4) != 0)
		return -EPROTO;
	*ret_errno = (int)e;
	return 0;
}

int fl__proto_bye_decode(const struct fl__proto_hdr *h, size_t len)
{
	return h && h->type == FL_MSG_BYE && len == 0 && h->length == 0 ? 0 : -EPROTO;
}

/* ---- encoding ------------------------------------------------------------ */

int fl__proto_hdr_encode(uint8_t *buf, size_t cap, uint16_t type, uint32_t length, uint32_t id,
			 uint32_t flags)
{
	uint32_t min, max;

	if (!buf || length_bounds(type, &min, &max) || length < min || length > max)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE)
		return -ENOBUFS;
	st32(buf, FL_PROTO_MAGIC);
	st16(buf + 4, FL_PROTO_VERSION);
	st16(buf + 6, type);
	st32(buf + 8, length);
	st32(buf + 12, id);
	st32(buf + 16, flags);
	st32(buf + 20, 0);
	return FL_PROTO_HDR_SIZE;
}

int fl__proto_hello_encode(uint8_t *buf, size_t cap, const struct fl__proto_hello *m)
{
	if (!m || m->role > FL_ROLE_BULK)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_HELLO, FL_PROTO_HELLO_SIZE, 0, 0);
	buf += FL_PROTO_HDR_SIZE;
	st64(buf, m->session);
	st32(buf + 8, m->role);
	st32(buf + 12, m->features & FL_PROTO_FEAT_MASK);
	memcpy(buf + 16, m->image_id, 16);
	return FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE;
}

int fl__proto_ack_encode(uint8_t *buf, size_t cap, const uint8_t image_id[16], uint32_t page_size,
			 uint32_t max_pages, const struct fl__proto_region *regions, uint32_t nregions)
{
	size_t len = FL_PROTO_ACK_FIXED + (size_t)nregions * FL_PROTO_ACK_REGION;
	uint8_t *p;

	if (!buf || !image_id || (!regions && nregions) || nregions < 1 || nregions > FL_PROTO_MAX_REGIONS ||
	    page_size != FL_PROTO_PAGE_SIZE || max_pages < 1 || max_pages > FL_PROTO_MAX_PAGES)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + len)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_HELLO_ACK, (uint32_t)len, 0, 0);
	p = buf + FL_PROTO_HDR_SIZE;
	memcpy(p, image_id, 16);
	st32(p + 16, page_size);
	st32(p + 20, nregions);
	st32(p + 24, max_pages);
	st32(p + 28, 0);
	for (uint32_t i = 0; i < nregions; i++) {
		uint8_t *e = p + FL_PROTO_ACK_FIXED + (size_t)i * FL_PROTO_ACK_REGION;
		st64(e, regions[i].length);
		st32(e + 8, regions[i].prot);
		st32(e + 12, regions[i].mem);
	}
	return (int)(FL_PROTO_HDR_SIZE + len);
}

int fl__proto_read_encode(uint8_t *buf, size_t cap, uint32_t id, bool urgent, const struct fl__proto_read *m)
{
	uint8_t *p;

	if (!m || !id || m->npages < 1 || m->npages > FL_PROTO_MAX_PAGES)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + FL_PROTO_READ_SIZE)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_READ, FL_PROTO_READ_SIZE, id, urgent ? FL_MSG_F_URGENT : 0);
	p = buf + FL_PROTO_HDR_SIZE;
	st32(p, m->region);
	st32(p + 4, m->npages);
	st64(p + 8, m->first);
	return FL_PROTO_HDR_SIZE + FL_PROTO_READ_SIZE;
}

int fl__proto_data_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m,
			  const uint8_t *kinds, size_t *ret_length)
{
	size_t fixed, ndata = 0, length;
	uint8_t *p;

	if (!buf || !m || !kinds || !id || m->npages < 1 || m->npages > FL_PROTO_MAX_PAGES)
		return -EINVAL;
	for (uint32_t i = 0; i < m->npages; i++) {
		if (kinds[i] == FL_PROTO_KIND_DATA)
			ndata++;
		else if (kinds[i] != FL_PROTO_KIND_ZERO)
			return -EINVAL;
	}
	fixed = FL_PROTO_DATA_PREFIX + FL_PROTO_KINDS_LEN(m->npages);
	if (cap < FL_PROTO_HDR_SIZE + fixed)
		return -ENOBUFS;
	length = fixed + ndata * FL_PROTO_PAGE_SIZE + FL_PROTO_TRAILER_LEN(ndata);
	fl__proto_hdr_encode(buf, cap, FL_MSG_DATA, (uint32_t)length, id, 0);
	p = buf + FL_PROTO_HDR_SIZE;
	st32(p, m->region);
	st32(p + 4, m->npages);
	st64(p + 8, m->first);
	memcpy(p + FL_PROTO_DATA_PREFIX, kinds, m->npages);
	memset(p + FL_PROTO_DATA_PREFIX + m->npages, 0, FL_PROTO_KINDS_LEN(m->npages) - m->npages);
	if (ret_length)
		*ret_length = FL_PROTO_HDR_SIZE + length;
	return (int)(FL_PROTO_HDR_SIZE + fixed);
}

int fl__proto_trailer_encode(uint8_t *buf, size_t cap, const uint64_t *csums, uint32_t ndata, int status)
{
	if (!buf || (!csums && ndata) || ndata > FL_PROTO_MAX_PAGES)
		return -EINVAL;
	if (status < 0)
		status = -status;
	if (status > 4095)
		status = EIO;
	if (cap < FL_PROTO_TRAILER_LEN(ndata))
		return -ENOBUFS;
	for (uint32_t i = 0; i < ndata; i++)
		st64(buf + 8 * (size_t)i, csums[i]);
	st32(buf + 8 * (size_t)ndata, (uint32_t)status);
	st32(buf + 8 * (size_t)ndata + 4, 0);
	return (int)FL_PROTO_TRAILER_LEN(ndata);
}

int fl__proto_error_encode(uint8_t *buf, size_t cap, uint32_t id, int err)
{
	if (err < 0)
		err = -err;
	if (err < 1 || err > 4095)
		err = EIO;
	if (!buf)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + FL_PROTO_ERROR_SIZE)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_ERROR, FL_PROTO_ERROR_SIZE, id, 0);
	st32(buf + FL_PROTO_HDR_SIZE, (uint32_t)err);
	st32(buf + FL_PROTO_HDR_SIZE + 4, 0);
	return FL_PROTO_HDR_SIZE + FL_PROTO_ERROR_SIZE;
}

int fl__proto_write_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m)
{
	uint8_t *p;

	if (!buf || !m || !id || m->npages < 1 || m->npages > FL_PROTO_MAX_PAGES)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_PREFIX)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_WRITE, (uint32_t)FL_PROTO_WRITE_LEN(m->npages), id, 0);
	p = buf + FL_PROTO_HDR_SIZE;
	st32(p, m->region);
	st32(p + 4, m->npages);
	st64(p + 8, m->first);
	return FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_PREFIX;
}

int fl__proto_done_encode(uint8_t *buf, size_t cap, uint32_t id, const struct fl__proto_read *m)
{
	uint8_t *p;

	if (!buf || !id)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE + FL_PROTO_DONE_SIZE)
		return -ENOBUFS;
	fl__proto_hdr_encode(buf, cap, FL_MSG_DONE, FL_PROTO_DONE_SIZE, id, 0);
	p = buf + FL_PROTO_HDR_SIZE;
	st32(p, m ? m->region : 0);
	st32(p + 4, m ? m->npages : 0);
	st64(p + 8, m ? m->first : 0);
	return FL_PROTO_HDR_SIZE + FL_PROTO_DONE_SIZE;
}

int fl__proto_flush_encode(uint8_t *buf, size_t cap, uint32_t id)
{
	if (!buf || !id)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE)
		return -ENOBUFS;
	return fl__proto_hdr_encode(buf, cap, FL_MSG_FLUSH, 0, id, 0);
}

void fl__proto_ack_set_features(uint8_t *ack, uint32_t features)
{
	st32(ack + FL_PROTO_HDR_SIZE + 28, features);
}

int fl__proto_bye_encode(uint8_t *buf, size_t cap)
{
	if (!buf)
		return -EINVAL;
	if (cap < FL_PROTO_HDR_SIZE)
		return -ENOBUFS;
	return fl__proto_hdr_encode(buf, cap, FL_MSG_BYE, 0, 0, 0);
}

uint64_t fl__proto_page_csum(const void *page)
{
	return XXH3_64bits(page, FL_PROTO_PAGE_SIZE);
}

const char *fl__proto_type_name(uint16_t type)
{
	switch (type) {
	case FL_MSG_HELLO:
		return "HELLO";
	case FL_MSG_HELLO_ACK:
		return "HELLO_ACK";
	case FL_MSG_READ:
		return "READ";
	case FL_MSG_DATA:
		return "DATA";
	case FL_MSG_ERROR:
		return "ERROR";
	case FL_MSG_BYE:
		return "BYE";
	case FL_MSG_WRITE:
		return "WRITE";
	case FL_MSG_DONE:
		return "DONE";
	case FL_MSG_FLUSH:
		return "FLUSH";
	}
	return "?";
}
