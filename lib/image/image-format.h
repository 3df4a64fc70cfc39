/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * On-disk layout of image format v1 (documented in faultline-image(5)).
 * All integers little-endian.
 *
 *   [header, 4096 bytes]  [page data ...]  [region table]  [page index]  [end record]
 *
 * Data comes first so a streaming writer can append pages in any order and
 * write the table, index and end record once it knows them.
 */
#ifndef FL_IMAGE_FORMAT_H
#define FL_IMAGE_FORMAT_H

#include "kernel.h"
#include "store-internal.h"
#include <faultline/image.h>

#define FL_IMG_MAGIC FL__IMAGE_MAGIC	/* store-internal.h: the file store knows it too */
#define FL_IMG_END_MAGIC "FLTIMEND"
#define FL_IMG_VERSION 1
#define FL_IMG_HEADER_SIZE 4096u
#define FL_IMG_MAX_CHAIN 64
#define FL_IMG_MAX_REGIONS 65536u
/* Pages in an image: its index stays below 2^63 bytes, so offsets past it
 * never wrap. The writer refuses more; the reader calls more corrupt. */
#define FL_IMG_MAX_PAGES ((UINT64_MAX / 2) / sizeof(struct fl__img_page))

/* header flags */
#define FL_IMG_F_INCREMENTAL (1u << 0)
#define FL_IMG_F_LZ4 (1u << 1)

/* compression kinds */
#define FL_IMG_COMP_NONE 0
#define FL_IMG_COMP_LZ4 1

struct fl__img_header {
	char magic[8];
	uint32_t version;
	uint32_t flags;
	uint32_t page_size;
	uint32_t nregions;
	uint64_t created_ns;
	char creator[64];
	uint8_t id[16];
	uint8_t parent_id[16];
	char parent_path[256];
	uint64_t table_off;
	uint64_t index_off;
	uint64_t total_pages;
	uint64_t end_off;
	uint64_t data_off;
	uint64_t data_end;
	uint64_t reserved[9];
	uint64_t header_csum;	/* XXH3-64 of the whole 4 KiB header block with this field = 0 */
} __attribute__((packed));

struct fl__img_region {
	uint64_t start;
	uint64_t length;
	uint32_t prot;
	uint32_t mem;
	uint64_t first_page;	/* index of the region's first page in the page index */
	uint64_t npages;
	char name[64];
	uint8_t reserved[24];
} __attribute__((packed));

struct fl__img_page {
	uint8_t kind;		/* enum fl_page_kind */
	uint8_t comp;		/* FL_IMG_COMP_* */
	uint16_t reserved;
	uint32_t stored_len;	/* bytes in the file (page size when uncompressed) */
	uint64_t offset;	/* file offset of the data */
	uint64_t csum;		/* XXH3-64 of the uncompressed page */
} __attribute__((packed));

struct fl__img_end {
	char magic[8];
	uint64_t index_csum;	/* XXH3-64 over region table then page index */
	uint64_t total_pages;
	uint64_t file_size;
	uint8_t id[16];
	uint64_t reserved;
	uint64_t end_csum;	/* XXH3-64 of this struct with end_csum = 0 */
} __attribute__((packed));

static_assert(sizeof(struct fl__img_header) == 512, "header layout");
static_assert(sizeof(struct fl__img_region) == 128, "region layout");
static_assert(sizeof(struct fl__img_page) == 24, "page layout");
static_assert(sizeof(struct fl__img_end) == 64, "end layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "v1 images are little-endian; add byte swapping for big-endian hosts");

/* Shared by writer and reader. */
/* How a child records its parent's path: relative when in the same directory. */
int fl__img_relpath(const char *parent, const char *child, char *out, size_t len);
/* Resolve a recorded parent path against the child's path. */
int fl__img_parent_path(const char *child, const char *recorded, char *out, size_t len);
uint64_t fl__img_header_csum(const uint8_t block[FL_IMG_HEADER_SIZE]);
uint64_t fl__img_end_csum(const struct fl__img_end *e);
void fl__img_content_id(const struct fl__img_region *table, uint32_t nregions,
			const struct fl__img_page *index, uint64_t total_pages, uint8_t id[16]);

#endif
