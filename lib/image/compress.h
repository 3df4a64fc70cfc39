/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Page compression of the image format: LZ4 blocks, or, in a build without
 * LZ4 (-Dlz4=disabled), nothing: then writing compressed pages and reading
 * them fail with -EOPNOTSUPP, so an image with LZ4 pages is refused page by
 * page and never read as anything but its own bytes.
 */
#ifndef FL_IMAGE_COMPRESS_H
#define FL_IMAGE_COMPRESS_H

#include <stddef.h>

/*
 * LZ4's worst case for n input bytes (its LZ4_COMPRESSBOUND): an LZ4 page
 * stored longer than this is corrupt. Spelled out here because it is part
 * of the format's validation, which a build without LZ4 does as well
 * (compress.c checks it against liblz4's).
 */
#define FL_IMG_LZ4_BOUND(n) ((n) + (n) / 255u + 16u)

/*
 * Compress `len` bytes into `out` (`cap` bytes). Returns the compressed
 * length (> 0), 0 when it does not fit, -EOPNOTSUPP without LZ4.
 */
int fl__lz4_compress(const void *src, size_t len, void *out, size_t cap);
/*
 * Decompress `slen` bytes that must give exactly `len` bytes into `out`.
 * Returns 0, -EBADMSG (not a valid block of that size), -EOPNOTSUPP
 * without LZ4 (out is not written).
 */
int fl__lz4_decompress(const void *src, size_t slen, void *out, size_t len);

#endif
