/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For the image fuzz targets: make a mutated image consistent again where
 * its layout allows, so the checks behind the checksums are reached too.
 */
#ifndef FL_FUZZ_IMAGE_FIXUP_H
#define FL_FUZZ_IMAGE_FIXUP_H

#include "image-format.h"

#include <stdbool.h>
#include <string.h>
#include <xxhash.h>

/*
 * Recompute every checksum, and with `id` the content id, where the layout
 * allows. Left stale, the id is what reaches the content-id check.
 */
static void fix_up(uint8_t *b, size_t size, bool id)
{
	struct fl__img_header h;
	struct fl__img_end end;
	XXH3_state_t *st;
	uint64_t tb, ib;

	if (size < FL_IMG_HEADER_SIZE)
		return;
	memcpy(&h, b, sizeof(h));
	if (h.nregions > 64 || h.total_pages > 4096)
		goto header;
	tb = (uint64_t)h.nregions * sizeof(struct fl__img_region);
	ib = h.total_pages * sizeof(struct fl__img_page);
	if (h.table_off > size || tb > size - h.table_off || h.index_off > size || ib > size - h.index_off ||
	    h.end_off > size || sizeof(end) > size - h.end_off)
		goto header;
	if (id)
		fl__img_content_id((const void *)(b + h.table_off), h.nregions, (const void *)(b + h.index_off),
				   h.total_pages, h.id);
	memcpy(&end, b + h.end_off, sizeof(end));
	st = XXH3_createState();
	if (!st)
		return;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, b + h.table_off, tb);
	XXH3_64bits_update(st, b + h.index_off, ib);
	end.index_csum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	memcpy(end.id, h.id, 16);
	end.end_csum = fl__img_end_csum(&end);
	memcpy(b + h.end_off, &end, sizeof(end));
header:
	memcpy(b, &h, sizeof(h));
	h.header_csum = fl__img_header_csum(b);
	memcpy(b, &h, sizeof(h));
}

#endif
