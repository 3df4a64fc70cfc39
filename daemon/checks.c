// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The checks of what a peer sends that need nothing of a running daemon:
 * Firecracker's handshake (its JSON mappings, against the size of the guest
 * memory file) and an ATTACH's ranges (against the session's sources and
 * the per-client limits). They are apart from the sockets, the engine and
 * the uffd so that test/fuzz can drive them with arbitrary input
 * (fuzz-firecracker, fuzz-attach); firecracker.c and session.c call them
 * before anything is adopted or served.
 */
#include "faultlined.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ---- Firecracker's mappings ------------------------------------------------ */

static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EBADMSG;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_mappings(const char *buf, size_t len, struct fld_fc_mapping *m, size_t *ret_n, char *why,
			  size_t whylen)
{
	json_error_t err;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err), *o;
	size_t i;
	int r = 0;

	if (!root) {
		snprintf(why, whylen, "JSON: %.100s", err.text);
		return -EBADMSG;
	}
	if (!json_is_array(root) || !json_array_size(root) || json_array_size(root) > FLD_FC_MAX_MAPPINGS) {
		snprintf(why, whylen, "not an array of 1..%d mappings", FLD_FC_MAX_MAPPINGS);
		json_decref(root);
		return -EBADMSG;
	}
	json_array_foreach(root, i, o) {
		uint64_t kib;
		if (!json_is_object(o) || get_u64(o, "base_host_virt_addr", &m[i].base) ||
		    get_u64(o, "size", &m[i].size) || get_u64(o, "offset", &m[i].offset)) {
			snprintf(why, whylen, "mapping %zu: base_host_virt_addr, size and offset are required", i);
			r = -EBADMSG;
			break;
		}
		if (get_u64(o, "page_size", &m[i].page_size)) {
			if (get_u64(o, "page_size_kib", &kib) || kib > (1u << 20)) {
				snprintf(why, whylen, "mapping %zu: no page_size", i);
				r = -EBADMSG;
				break;
			}
			m[i].page_size = kib * 1024;
		}
	}
	*ret_n = json_array_size(root);
	json_decref(root);
	return r;
}

static int check_mapping(uint64_t file, const struct fld_fc_mapping *m, char *why, size_t whylen)
{
	if (m->page_size != 4096 && m->page_size != (2u << 20)) {
		snprintf(why, whylen, "page size %llu (4 KiB or 2 MiB)", (unsigned long long)m->page_size);
		return -EINVAL;
	}
	if (!m->size || m->base % m->page_size || m->size % m->page_size || m->offset % m->page_size ||
	    m->base + m->size < m->base) {
		snprintf(why, whylen, "mapping 0x%llx+%llu not aligned to its pages", (unsigned long long)m->base,
			 (unsigned long long)m->size);
		return -EINVAL;
	}
	if (m->offset > file || m->size > file - m->offset) {
		snprintf(why, whylen, "mapping at offset %llu+%llu is beyond the memory file (%llu bytes)",
			 (unsigned long long)m->offset, (unsigned long long)m->size, (unsigned long long)file);
		return -ERANGE;
	}
	return 0;
}

int fld_fc_mappings(const char *json, size_t len, uint64_t mem_size, struct fld_fc_mapping *maps, size_t *ret_n,
		    char *why, size_t whylen)
{
	size_t n = 0;
	int r;

	r = parse_mappings(json, len, maps, &n, why, whylen);
	for (size_t i = 0; !r && i < n; i++)
		r = check_mapping(mem_size, &maps[i], why, whylen);
	for (size_t i = 0; !r && i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			if (maps[i].base < maps[j].base + maps[j].size && maps[j].base < maps[i].base + maps[i].size) {
				snprintf(why, whylen, "mappings %zu and %zu overlap", i, j);
				r = -EINVAL;
				break;
			}
		}
	}
	if (!r)
		*ret_n = n;
	return r;
}

/* ---- an ATTACH's ranges ---------------------------------------------------- */

static int check_range(const struct fld_session *s, const struct fl__mgr_range *r, bool *beacon)
{
	const struct fld_source *src;

	if (r->addr % 4096 || r->len % 4096 || r->offset % 4096)
		return -EINVAL;
	if (r->flags & FL_MGR_RANGE_BEACON) {
		if (r->source || r->len != 4096 || *beacon || s->beacon)
			return -EINVAL;
		*beacon = true;
	}
	if (!r->source)
		return r->mem || r->offset ? -EINVAL : 0;
	if (r->source > s->nsources)
		return -ENOENT;
	src = &s->sources[r->source - 1];
	if (r->offset > src->length || r->len > src->length - r->offset)
		return -ERANGE;
	if (src->shared)
		/* A segment is mapped whole at its base: offset 0, its memory
		 * type, whole pages of it. */
		return r->mem != src->mem || r->offset || r->len % src->page_size ? -EINVAL : 0;
	if (src->tpl)
		/* Clones map the template from its first byte (the alias the
		 * daemon fills through starts there too). */
		return r->mem != 1 || r->offset ? -EINVAL : 0;
	return r->mem ? -EINVAL : 0;
}

int fld_attach_check(const struct fld_config *cfg, const struct fld_session *s, const struct fl__mgr_range *ranges,
		     uint32_t n, uint64_t *ret_bytes, char *why, size_t whylen)
{
	uint64_t bytes = 0;
	bool beacon = false;
	int r;

	if (s->nranges + n > cfg->max_ranges) {
		snprintf(why, whylen, "more than %u ranges", cfg->max_ranges);
		return -EDQUOT;
	}
	for (uint32_t i = 0; i < n; i++) {
		r = check_range(s, &ranges[i], &beacon);
		if (r) {
			snprintf(why, whylen, "range %u (0x%llx+%llu): %s", i, (unsigned long long)ranges[i].addr,
				 (unsigned long long)ranges[i].len, strerror(-r));
			return r;
		}
		/* Zero-fill ranges have no length bound of their own: a sum
		 * that wraps would pass any limit. */
		if (bytes + ranges[i].len < bytes) {
			snprintf(why, whylen, "ranges larger than the address space");
			return -EOVERFLOW;
		}
		bytes += ranges[i].len;
	}
	if (s->bytes + bytes < s->bytes) {
		snprintf(why, whylen, "ranges larger than the address space");
		return -EOVERFLOW;
	}
	if (cfg->max_bytes && s->bytes + bytes > cfg->max_bytes) {
		snprintf(why, whylen, "%llu bytes over the limit of %llu", (unsigned long long)(s->bytes + bytes),
			 (unsigned long long)cfg->max_bytes);
		return -EDQUOT;
	}
	*ret_bytes = bytes;
	return 0;
}
