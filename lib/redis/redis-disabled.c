// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis store in a build without hiredis (-Dredis=disabled). The entry
 * points stay so that the library exports the same symbols in every
 * configuration (a program built against a full libfaultline still loads,
 * and learns at run time what is missing): each returns -EOPNOTSUPP, the
 * error a caller already handles for "not available here", and touches
 * none of its out-parameters.
 */
#include <faultline/redis.h>

#include <errno.h>

int fl_redis_push(struct fl_image *img, const struct fl_redis_opts *opts, fl_progress_fn progress, void *ctx)
{
	return -EOPNOTSUPP;
}

int fl_store_redis_new(const struct fl_redis_opts *opts, struct fl_store **ret_store)
{
	return -EOPNOTSUPP;
}

int fl_redis_regions(const struct fl_redis_opts *opts, struct fl_image_region *regions, unsigned max,
		     uint8_t ret_id[FL_IMAGE_ID_LEN])
{
	return -EOPNOTSUPP;
}

int fl_store_redis_far_new(const struct fl_redis_opts *opts, uint64_t size, unsigned flags,
			   struct fl_store **ret_store)
{
	return -EOPNOTSUPP;
}
