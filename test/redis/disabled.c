// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A build without Redis support (-Dredis=disabled): the public Redis
 * functions are still exported (the ABI does not depend on the build) and
 * each returns -EOPNOTSUPP, with valid arguments, without touching its
 * out-parameters. In a build with Redis the cases skip: the other redis-*
 * programs test the real thing.
 */
#include "harness.h"
#include "fl-config.h"

#include <faultline/redis.h>
#include <unistd.h>

#define URL "redis://127.0.0.1:1/faultline-disabled"

static void need_disabled(void)
{
	if (FL_HAVE_REDIS)
		t_skip("built with Redis support: redis-single and redis-cluster test it");
}

static int t_push(void *arg)
{
	char dir[] = "/tmp/fl-redis-disabled-XXXXXX", path[64];
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = 4096, .prot = 3, .name = "r" };
	struct fl_redis_opts ro = { .sz = sizeof(ro), .url = URL, .timeout_ms = t_scaled_ms(100) };
	struct fl_image_writer *w;
	struct fl_image *img;
	uint8_t page[4096];

	(void)arg;
	need_disabled();
	T_ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.img", dir);
	memset(page, 0x5a, sizeof(page));
	T_OK(fl_image_writer_new(path, &wo, &w));
	T_OK(fl_image_writer_add_region(w, &reg));
	T_OK(fl_image_writer_put(w, 0, 0, 1, page));
	T_OK(fl_image_writer_finish(w, NULL));
	T_OK(fl_image_open(path, 0, &img));
	T_ASSERT_EQ(fl_redis_push(img, &ro, NULL, NULL), -EOPNOTSUPP);
	fl_image_close(img);
	unlink(path);
	rmdir(dir);
	return T_PASS;
}

static int t_store(void *arg)
{
	struct fl_redis_opts ro = { .sz = sizeof(ro), .url = URL, .timeout_ms = t_scaled_ms(100) };
	struct fl_store *st = (struct fl_store *)&ro; /* must stay untouched */

	(void)arg;
	need_disabled();
	T_ASSERT_EQ(fl_store_redis_new(&ro, &st), -EOPNOTSUPP);
	T_ASSERT(st == (struct fl_store *)&ro);
	T_ASSERT_EQ(fl_store_redis_far_new(&ro, 1 << 20, FL_REDIS_FAR_ZERO_MISSING, &st), -EOPNOTSUPP);
	T_ASSERT(st == (struct fl_store *)&ro);
	return T_PASS;
}

static int t_regions(void *arg)
{
	struct fl_redis_opts ro = { .sz = sizeof(ro), .url = URL, .timeout_ms = t_scaled_ms(100) };
	struct fl_image_region regs[2];
	uint8_t id[FL_IMAGE_ID_LEN];

	(void)arg;
	need_disabled();
	memset(id, 0xa5, sizeof(id));
	T_ASSERT_EQ(fl_redis_regions(&ro, regs, 2, id), -EOPNOTSUPP);
	for (size_t i = 0; i < sizeof(id); i++)
		T_ASSERT_EQ(id[i], 0xa5);
	T_ASSERT_EQ(fl_redis_regions(&ro, NULL, 0, NULL), -EOPNOTSUPP);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "disabled/push", t_push, NULL, 30 },
	{ "disabled/store", t_store, NULL, 30 },
	{ "disabled/regions", t_regions, NULL, 30 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
