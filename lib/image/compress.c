// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * LZ4 for image pages (see compress.h), or its absence in a build without
 * LZ4 support: the only file of the library that includes lz4.h.
 */
#include "compress.h"

#include "flutil.h"
#include "fl-config.h"

#include <limits.h>

#if FL_HAVE_LZ4
#include <lz4.h>

_Static_assert(FL_IMG_LZ4_BOUND(FL_PAGE_SIZE) == LZ4_COMPRESSBOUND(FL_PAGE_SIZE),
	      "the format's LZ4 bound is liblz4's");

int fl__lz4_compress(const void *src, size_t len, void *out, size_t cap)
{
	int n;

	if (len > INT_MAX || cap > INT_MAX)
		return -EINVAL;
	n = LZ4_compress_default(src, out, (int)len, (int)cap);
	return n > 0 ? n : 0;
}

int fl__lz4_decompress(const void *src, size_t slen, void *out, size_t len)
{
	if (slen > INT_MAX || len > INT_MAX)
		return -EBADMSG;
	return LZ4_decompress_safe(src, out, (int)slen, (int)len) == (int)len ? 0 : -EBADMSG;
}

#else

int fl__lz4_compress(const void *src, size_t len, void *out, size_t cap)
{
	return -EOPNOTSUPP;
}

int fl__lz4_decompress(const void *src, size_t slen, void *out, size_t len)
{
	return -EOPNOTSUPP;
}

#endif
