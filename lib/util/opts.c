// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Options and stats structs that grow: the one implementation of the rules
 * in flutil.h (fl__opts_copy, fl__opts_out), so every public function
 * treats a zero, smaller or larger `sz` the same way.
 */
#include "flutil.h"

static int check_sz(size_t sz)
{
	if (sz < sizeof(size_t))
		return -EINVAL;
	if (sz > FL_OPTS_MAX_SZ)
		return -E2BIG;
	return 0;
}

int fl__opts_copy(void *dst, size_t dst_sz, const void *src)
{
	size_t sz;
	int r;

	memset(dst, 0, dst_sz);
	if (!src) {
		*(size_t *)dst = dst_sz;
		return 0;
	}
	memcpy(&sz, src, sizeof(sz));
	r = check_sz(sz);
	if (r)
		return r;
	for (size_t i = dst_sz; i < sz; i++)
		if (((const unsigned char *)src)[i])
			return -E2BIG;
	memcpy(dst, src, FL_MIN(sz, dst_sz));
	*(size_t *)dst = dst_sz;
	return 0;
}

int fl__opts_out_check(const void *dst)
{
	size_t sz;

	if (!dst)
		return -EINVAL;
	memcpy(&sz, dst, sizeof(sz));
	return check_sz(sz);
}

int fl__opts_out(void *dst, const void *src, size_t src_sz)
{
	size_t sz;
	int r = fl__opts_out_check(dst);

	if (r)
		return r;
	memcpy(&sz, dst, sizeof(sz));
	memcpy(dst, src, FL_MIN(sz, src_sz));
	if (sz > src_sz)
		memset((unsigned char *)dst + src_sz, 0, sz - src_sz);
	memcpy(dst, &sz, sizeof(sz));	/* the caller's sz, not ours */
	return 0;
}
