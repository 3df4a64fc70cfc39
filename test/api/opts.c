// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Options and statistics structs (faultline(7), "Conventions"): for every
 * public function that takes a struct starting with `size_t sz`:
 *  - in:  sz 0 is -EINVAL; a larger struct with a zero tail (a caller
 *         built against a newer header) gives the same result as the exact
 *         size; a non-zero byte in that tail is -E2BIG; sz > 4096 is
 *         -E2BIG; sz covering only sz itself (the oldest caller) is the
 *         defaults; NULL is the defaults where the page allows it and
 *         -EINVAL elsewhere.
 *  - out: sz 0 is -EINVAL; a larger struct gets its tail zeroed and keeps
 *         its sz; a smaller one gets no byte past its sz written.
 * Each check first asserts that the well-formed struct is accepted (its
 * result is not -EINVAL or -E2BIG), so a check cannot pass vacuously.
 *
 * fl_client_map() needs a running faultlined: test/daemon/clients.c,
 * case "map-opts". fl_store_ctl(FL_REDIS_CTL_STATS) needs a Redis server:
 * test/redis/single.c.
 */
#include "util.h"
#include "fl-config.h"

#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

#define TAIL 24			/* bytes a "newer" caller's struct has past ours */
#define NULL_EINVAL INT_MIN	/* check_in(): NULL opts must be -EINVAL */

static union {
	max_align_t align;
	unsigned char b[8192];
} big;

typedef int (*in_fn)(const void *opts, void *ctx);

static void set_sz(void *p, size_t sz)
{
	memcpy(p, &sz, sizeof(sz));
}

/*
 * `good` is a valid struct of `size` bytes for `call`; null_want is what
 * NULL (and the oldest caller, sz covering only sz) must give, or
 * NULL_EINVAL when opts are required.
 */
static void check_in(const char *what, in_fn call, void *ctx, const void *good, size_t size, int null_want)
{
	int want = call(good, ctx);

	t_log("%s: well-formed -> %d", what, want);
	T_ASSERT(want != -EINVAL && want != -E2BIG, "%s: the well-formed struct was refused (%d)", what, want);

	memset(big.b, 0, sizeof(big.b));
	memcpy(big.b, good, size);
	set_sz(big.b, 0);
	T_ASSERT(call(big.b, ctx) == -EINVAL, "%s: sz 0 not -EINVAL", what);

	set_sz(big.b, size + TAIL);
	T_ASSERT(call(big.b, ctx) == want, "%s: a larger struct with a zero tail changed the result", what);
	big.b[size] = 0x80;
	T_ASSERT(call(big.b, ctx) == -E2BIG, "%s: first tail byte set: not -E2BIG", what);
	big.b[size] = 0;
	big.b[size + TAIL - 1] = 1;
	T_ASSERT(call(big.b, ctx) == -E2BIG, "%s: last tail byte set: not -E2BIG", what);
	big.b[size + TAIL - 1] = 0;
	set_sz(big.b, 4097);
	T_ASSERT(call(big.b, ctx) == -E2BIG, "%s: sz 4097 not -E2BIG", what);
	/* The caller's struct is read once: a second call with the same
	 * bytes behaves the same (nothing was written into it). */
	set_sz(big.b, size);
	T_ASSERT(memcmp(big.b, good, size) == 0, "%s: the caller's struct was modified", what);

	if (null_want == NULL_EINVAL) {
		T_ASSERT(call(NULL, ctx) == -EINVAL, "%s: NULL opts not -EINVAL", what);
	} else {
		T_ASSERT(call(NULL, ctx) == null_want, "%s: NULL opts did not give the defaults", what);
		memset(big.b, 0, size);
		set_sz(big.b, sizeof(size_t));
		T_ASSERT(call(big.b, ctx) == null_want, "%s: the oldest struct (sz only) is not the defaults",
			 what);
	}
}

typedef int (*out_fn)(void *out, void *ctx);

/* `size` is this build's sizeof; null_ok: the out struct is optional. */
static void check_out(const char *what, out_fn call, void *ctx, size_t size, bool null_ok)
{
	memset(big.b, 0xee, sizeof(big.b));
	set_sz(big.b, 0);
	T_ASSERT(call(big.b, ctx) == -EINVAL, "%s: sz 0 not -EINVAL", what);

	memset(big.b, 0xee, sizeof(big.b));
	set_sz(big.b, size);
	T_ASSERT(call(big.b, ctx) == 0, "%s: exact size refused", what);

	memset(big.b, 0xee, sizeof(big.b));
	set_sz(big.b, size + TAIL);
	T_ASSERT(call(big.b, ctx) == 0, "%s: a larger struct was refused", what);
	for (size_t i = size; i < size + TAIL; i++)
		T_ASSERT(big.b[i] == 0, "%s: byte %zu past our struct not zeroed", what, i);
	T_ASSERT(big.b[size + TAIL] == 0xee, "%s: written past the caller's sz", what);
	T_ASSERT(*(size_t *)big.b == size + TAIL, "%s: the caller's sz was changed", what);

	memset(big.b, 0xee, sizeof(big.b));
	set_sz(big.b, sizeof(size_t) + 4);
	T_ASSERT(call(big.b, ctx) == 0, "%s: a smaller struct was refused", what);
	for (size_t i = sizeof(size_t) + 4; i < size + TAIL; i++)
		T_ASSERT(big.b[i] == 0xee, "%s: byte %zu past a smaller caller's sz written", what, i);
	T_ASSERT(*(size_t *)big.b == sizeof(size_t) + 4, "%s: the caller's sz was changed", what);

	set_sz(big.b, 1u << 20);
	T_ASSERT(call(big.b, ctx) == -E2BIG, "%s: sz 1 MiB not -E2BIG", what);
	T_ASSERT(call(NULL, ctx) == (null_ok ? 0 : -EINVAL), "%s: NULL", what);
}

/* ---- engine, regions ----------------------------------------------------- */

static int call_engine_new(const void *o, void *ctx)
{
	struct fl_engine *e = NULL;
	int r = fl_engine_new(o, &e);
	(void)ctx;
	fl_engine_free(e);
	return r;
}

static int call_region_new(const void *o, void *ctx)
{
	struct fl_region *reg = NULL;
	int r = fl_region_new(ctx, o, &reg);
	fl_region_free(reg);
	return r;
}

static int call_engine_stats(void *out, void *ctx)
{
	return fl_engine_stats(ctx, out);
}

static int call_space_stats(void *out, void *ctx)
{
	return fl_engine_space_stats(ctx, 0, out);
}

static int call_region_stats(void *out, void *ctx)
{
	return fl_region_stats(ctx, out);
}

static int c_engine(void *arg)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .threads = 1, .batch = 16 };
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = 4 * U_PAGE, .mem = FL_MEM_ANON,
				     .mode = FL_MODE_MISSING, .name = "opts" };
	struct fl_engine *e = u_engine(0, 1);
	struct fl_region *reg = NULL;
	(void)arg;

	check_in("fl_engine_new", call_engine_new, NULL, &eo, sizeof(eo), 0);
	check_in("fl_region_new", call_region_new, e, &ro, sizeof(ro), NULL_EINVAL);
	T_OK(fl_region_new(e, &ro, &reg));
	check_out("fl_engine_stats", call_engine_stats, e, sizeof(struct fl_engine_stats), false);
	check_out("fl_engine_space_stats", call_space_stats, e, sizeof(struct fl_space_stats), false);
	check_out("fl_region_stats", call_region_stats, reg, sizeof(struct fl_region_stats), false);
	fl_region_free(reg);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- stores -------------------------------------------------------------- */

static int zero_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	(void)ctx;
	for (unsigned i = 0; i < n; i++)
		iov[i].flags_out |= FL_STORE_OUT_ZERO;
	return 0;
}

static int call_store_new(const void *ops, void *ctx)
{
	struct fl_store *s = NULL;
	int r = fl_store_new(ops, ctx, U_MIB, &s);
	fl_store_unref(s);
	return r;
}

static int c_store(void *arg)
{
	struct fl_store_ops ops = { .sz = sizeof(ops), .version = FL_STORE_OPS_VERSION,
				    .name = "opts", .read = zero_read };
	struct fl_store *s;
	struct fl_store_iov iov;
	uint8_t page[64];
	(void)arg;

	check_in("fl_store_new", call_store_new, NULL, &ops, sizeof(ops), NULL_EINVAL);
	/* The table is copied: the store works after the caller's is gone. */
	T_OK(fl_store_new(&ops, NULL, U_MIB, &s));
	memset(&ops, 0, sizeof(ops));
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page) };
	T_OK(fl_store_read(s, &iov, 1));
	T_ASSERT(iov.flags_out & FL_STORE_OUT_ZERO);
	T_ASSERT(strcmp(fl_store_name(s), "opts") == 0);
	fl_store_unref(s);
	return T_PASS;
}

/* ---- watches, pagemap ---------------------------------------------------- */

struct mem {
	void *addr;
	size_t len;
	int pagemap;
};

static int call_watch_new(const void *o, void *ctx)
{
	struct mem *m = ctx;
	struct fl_watch *w = NULL;
	int r = fl_watch_new(m->addr, m->len, o, &w);
	fl_watch_free(w);
	return r;
}

static int call_scan(const void *o, void *ctx)
{
	struct mem *m = ctx;
	struct fl_page_region vec[8];
	return fl_pagemap_scan(m->pagemap, o, vec, 8, NULL);
}

static int count_fn(const struct fl_page_region *region, void *ctx)
{
	(void)region;
	(*(int *)ctx)++;
	return 0;
}

static int call_scan_all(const void *o, void *ctx)
{
	struct mem *m = ctx;
	int n = 0;
	int64_t r = fl_pagemap_scan_all(m->pagemap, o, count_fn, &n);
	return r < 0 ? (int)r : n;
}

static int c_watch(void *arg)
{
	struct mem m = { .len = 8 * U_PAGE };
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = FL_WATCH_AUTO };
	struct fl_scan_opts so = { .sz = sizeof(so), .category_mask = FL_PAGE_IS_PRESENT,
				   .return_mask = FL_PAGE_IS_PRESENT };
	(void)arg;

	m.addr = mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(m.addr != MAP_FAILED);
	memset(m.addr, 1, 3 * U_PAGE);	/* one present run, then holes */
	check_in("fl_watch_new", call_watch_new, &m, &wo, sizeof(wo), 0);

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	T_OK(fl_pagemap_open(0, &m.pagemap));
	so.start = (uintptr_t)m.addr;
	so.end = so.start + m.len;
	check_in("fl_pagemap_scan", call_scan, &m, &so, sizeof(so), NULL_EINVAL);
	T_ASSERT_EQ(call_scan(&so, &m), 1);
	check_in("fl_pagemap_scan_all", call_scan_all, &m, &so, sizeof(so), NULL_EINVAL);
	close(m.pagemap);
	munmap(m.addr, m.len);
	return T_PASS;
}

/* ---- images -------------------------------------------------------------- */

struct img_ctx {
	char dir[64];
	char path[128];
	struct fl_range range;
	struct fl_image_writer *w;
	struct fl_image *img;
};

static void img_setup(struct img_ctx *c)
{
	static uint8_t data[4 * 4096] __attribute__((aligned(4096)));
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC };

	snprintf(c->dir, sizeof(c->dir), "/tmp/fl-opts-XXXXXX");
	T_ASSERT(mkdtemp(c->dir));
	snprintf(c->path, sizeof(c->path), "%s/a.img", c->dir);
	memset(data, 7, sizeof(data));
	c->range = (struct fl_range){ .start = (uintptr_t)data, .len = sizeof(data) };
	T_OK(fl_image_write_ranges(c->path, &c->range, 1, &wo));
	T_OK(fl_image_open(c->path, 0, &c->img));
}

static void img_teardown(struct img_ctx *c)
{
	char cmd[128];
	fl_image_close(c->img);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	T_ASSERT(system(cmd) == 0);
}

static int call_writer_new(const void *o, void *ctx)
{
	struct img_ctx *c = ctx;
	struct fl_image_writer *w = NULL;
	char path[160];
	int r;

	snprintf(path, sizeof(path), "%s/w.img", c->dir);
	r = fl_image_writer_new(path, o, &w);
	fl_image_writer_abort(w);
	return r;
}

static int call_write_ranges(const void *o, void *ctx)
{
	struct img_ctx *c = ctx;
	char path[160];

	snprintf(path, sizeof(path), "%s/r.img", c->dir);
	return fl_image_write_ranges(path, &c->range, 1, o);
}

static int call_add_region(const void *region, void *ctx)
{
	struct img_ctx *c = ctx;
	int r = fl_image_writer_add_region(c->w, region);
	return r < 0 ? r : 0;	/* the index grows with every region added */
}

static int call_image_info(void *out, void *ctx)
{
	struct img_ctx *c = ctx;
	return fl_image_info(c->img, out);
}

static int call_image_region(void *out, void *ctx)
{
	struct img_ctx *c = ctx;
	return fl_image_region(c->img, 0, out);
}

static int c_image(void *arg)
{
	struct img_ctx c = { 0 };
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC, .creator = "opts" };
	struct fl_image_region rg = { .sz = sizeof(rg), .length = 4 * U_PAGE, .prot = 3, .name = "r" };
	struct fl_image_region got = { .sz = sizeof(got) };
	char path[160];
	(void)arg;

	img_setup(&c);
	check_in("fl_image_writer_new", call_writer_new, &c, &wo, sizeof(wo), 0);
	check_in("fl_image_write_ranges", call_write_ranges, &c, &wo, sizeof(wo), 0);
	snprintf(path, sizeof(path), "%s/add.img", c.dir);
	T_OK(fl_image_writer_new(path, &wo, &c.w));
	check_in("fl_image_writer_add_region", call_add_region, &c, &rg, sizeof(rg), NULL_EINVAL);
	fl_image_writer_abort(c.w);
	check_out("fl_image_info", call_image_info, &c, sizeof(struct fl_image_info), false);
	check_out("fl_image_region", call_image_region, &c, sizeof(struct fl_image_region), false);
	T_OK(fl_image_region(c.img, 0, &got));
	T_ASSERT_EQ(got.length, 4 * U_PAGE);
	T_ASSERT(strcmp(got.name, "range0") == 0);
	img_teardown(&c);
	return T_PASS;
}

/* ---- templates and clones ------------------------------------------------ */

struct clone_ctx {
	struct fl_engine *e;
	struct fl_template *t;
	struct fl_region *clone;
	struct fl_reset_point *rp;
};

static int call_template_new(const void *o, void *ctx)
{
	struct fl_template *t = NULL;
	int r = fl_template_new(o, &t);
	(void)ctx;
	fl_template_free(t);
	return r;
}

static int call_clone_new(const void *o, void *ctx)
{
	struct clone_ctx *c = ctx;
	struct fl_region *reg = NULL;
	int r = fl_clone_new(c->e, c->t, o, &reg);
	fl_region_free(reg);
	return r;
}

static int call_clone_reset(void *out, void *ctx)
{
	struct clone_ctx *c = ctx;
	return fl_clone_reset(c->clone, out);
}

static int call_rp_reset(void *out, void *ctx)
{
	struct clone_ctx *c = ctx;
	return fl_reset_point_reset(c->rp, out);
}

static int c_clone(void *arg)
{
	uint8_t *img = u_image(U_MIB, 0, 3);
	struct fl_store *st = u_mem_store(img, U_MIB);
	struct fl_template_opts to = { .sz = sizeof(to), .mem = FL_MEM_SHMEM, .store = st, .name = "opts" };
	struct fl_clone_opts co = { .sz = sizeof(co), .name = "opts-clone" };
	struct clone_ctx c = { 0 };
	uint8_t *mem;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MINOR_SHMEM));
	check_in("fl_template_new", call_template_new, NULL, &to, sizeof(to), NULL_EINVAL);
	c.e = u_engine(0, 1);
	T_OK(fl_template_new(&to, &c.t));
	check_in("fl_clone_new", call_clone_new, &c, &co, sizeof(co), 0);
	T_OK(fl_clone_new(c.e, c.t, &co, &c.clone));
	mem = fl_region_addr(c.clone);
	mem[5] = 1;	/* something for the reset to do */
	check_out("fl_clone_reset", call_clone_reset, &c, sizeof(struct fl_reset_stats), true);
	T_ASSERT(memcmp(mem, img, U_MIB) == 0);

	t_require(FL_FEATURE_BIT(FL_FEATURE_WP_ASYNC));
	mem = mmap(NULL, 16 * U_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(mem != MAP_FAILED);
	memset(mem, 2, 16 * U_PAGE);
	T_OK(fl_reset_point_new(mem, 16 * U_PAGE, &c.rp));
	mem[U_PAGE] = 9;
	check_out("fl_reset_point_reset", call_rp_reset, &c, sizeof(struct fl_reset_stats), true);
	T_ASSERT_EQ(mem[U_PAGE], 2);
	fl_reset_point_free(c.rp);
	fl_region_free(c.clone);
	fl_template_free(c.t);
	fl_engine_free(c.e);
	fl_store_unref(st);
	return T_PASS;
}

/* ---- guard --------------------------------------------------------------- */

static int call_guard_new(const void *o, void *ctx)
{
	struct fl_guard *g = NULL;
	int r = fl_guard_new(o, &g);
	(void)ctx;
	fl_guard_free(g);
	return r;
}

static int c_guard(void *arg)
{
	struct fl_guard_opts go = { .sz = sizeof(go), .uffd = t_uffd(0), .timeout_ms = 100 };
	(void)arg;

	check_in("fl_guard_new", call_guard_new, NULL, &go, sizeof(go), NULL_EINVAL);
	close(go.uffd);
	return T_PASS;
}

/* ---- snapshots ----------------------------------------------------------- */

struct snap_ctx {
	char dir[64];
	struct fl_snapshot *snap;
	int n;
};

static int quiesce(bool pause, void *ctx)
{
	(void)pause;
	(void)ctx;
	return 0;
}

static int call_snapshot_new(const void *o, void *ctx)
{
	struct snap_ctx *c = ctx;
	struct fl_snapshot *s = NULL;
	char path[160];
	int r;

	snprintf(path, sizeof(path), "%s/s%d.img", c->dir, c->n++);
	r = fl_snapshot_new(path, o, &s);
	fl_snapshot_free(s);
	return r;
}

static int call_snapshot_take(const void *o, void *ctx)
{
	struct snap_ctx *c = ctx;
	char path[160];

	snprintf(path, sizeof(path), "%s/t%d.img", c->dir, c->n++);
	return fl_snapshot_take(path, o, NULL);
}

static int call_snapshot_progress(void *out, void *ctx)
{
	struct snap_ctx *c = ctx;
	return fl_snapshot_progress(c->snap, out);
}

static int c_snapshot(void *arg)
{
	struct snap_ctx c = { 0 };
	size_t len = 8 * U_PAGE;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_range range = { .start = (uintptr_t)mem, .len = len };
	struct fl_snapshot_opts so = { .sz = sizeof(so), .strategy = FL_SNAPSHOT_PRECOPY, .ranges = &range,
				       .nr_ranges = 1, .image_flags = FL_IMAGE_NO_SYNC, .quiesce = quiesce };
	struct fl_snapshot_opts copy;
	char path[160], cmd[128];
	(void)arg;

	T_ASSERT(mem != MAP_FAILED);
	memset(mem, 4, len);
	snprintf(c.dir, sizeof(c.dir), "/tmp/fl-opts-XXXXXX");
	T_ASSERT(mkdtemp(c.dir));
	check_in("fl_snapshot_new", call_snapshot_new, &c, &so, sizeof(so), NULL_EINVAL);
	check_in("fl_snapshot_take", call_snapshot_take, &c, &so, sizeof(so), NULL_EINVAL);
	/* The options are copied: the caller's struct (and its range array)
	 * may be scribbled over as soon as fl_snapshot_new() returns. */
	copy = so;
	snprintf(path, sizeof(path), "%s/p.img", c.dir);
	T_OK(fl_snapshot_new(path, &copy, &c.snap));
	memset(&copy, 0xff, sizeof(copy));
	range = (struct fl_range){ 0 };
	T_OK(fl_snapshot_start(c.snap));
	T_OK(fl_snapshot_wait(c.snap, -1, NULL));
	check_out("fl_snapshot_progress", call_snapshot_progress, &c, sizeof(struct fl_snapshot_progress), false);
	fl_snapshot_free(c.snap);
	{
		struct fl_image *img;
		uint8_t page[4096];
		T_OK(fl_image_open(path, 0, &img));
		T_OK(fl_image_read(img, 0, 7, 1, page, NULL));
		T_ASSERT(page[0] == 4 && page[4095] == 4);
		fl_image_close(img);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c.dir);
	T_ASSERT(system(cmd) == 0);
	munmap(mem, len);
	return T_PASS;
}

/* ---- page server, remote and Redis stores, client ------------------------ */

struct net_ctx {
	struct img_ctx img;
	struct fl_server *srv;
	struct fl_store *remote;
};

static int call_server_new(const void *o, void *ctx)
{
	struct net_ctx *c = ctx;
	struct fl_server *srv = NULL;
	int r = fl_server_new(c->img.img, o, &srv);
	fl_server_free(srv);
	return r;
}

static int call_server_stats(void *out, void *ctx)
{
	struct net_ctx *c = ctx;
	return fl_server_stats(c->srv, out);
}

static int call_remote_new(const void *o, void *ctx)
{
	struct fl_store *s = NULL;
	int r = fl_store_remote_new(o, &s);
	(void)ctx;
	fl_store_unref(s);
	return r;
}

static int call_remote_stats(void *out, void *ctx)
{
	struct net_ctx *c = ctx;
	return fl_store_ctl(c->remote, FL_REMOTE_CTL_STATS, out);
}

static int call_redis_new(const void *o, void *ctx)
{
	struct fl_store *s = NULL;
	int r = fl_store_redis_new(o, &s);
	(void)ctx;
	fl_store_unref(s);
	return r;
}

static int call_redis_push(const void *o, void *ctx)
{
	struct net_ctx *c = ctx;
	return fl_redis_push(c->img.img, o, NULL, NULL);
}

static int call_redis_regions(const void *o, void *ctx)
{
	(void)ctx;
	return fl_redis_regions(o, NULL, 0, NULL);
}

static int call_client_connect(const void *o, void *ctx)
{
	struct fl_client *cl = NULL;
	int r = fl_client_connect(o, &cl);
	(void)ctx;
	fl_client_free(cl);
	return r;
}

static void *run_server(void *srv)
{
	fl_server_run(srv);
	return NULL;
}

static int c_net(void *arg)
{
	struct net_ctx c = { 0 };
	struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0", .max_clients = 4 };
	/* Nothing listens on port 1: a refused connection, quickly. */
	struct fl_remote_opts ro = { .sz = sizeof(ro), .addr = "127.0.0.1:1", .timeout_ms = 300 };
	struct fl_redis_opts rdo = { .sz = sizeof(rdo), .url = "redis://127.0.0.1:1/opts", .timeout_ms = 300 };
	struct fl_client_opts clo = { .sz = sizeof(clo), .socket = "/nonexistent/faultlined.sock",
				      .timeout_ms = 300 };
	char addr[64];
	pthread_t th;
	(void)arg;

	img_setup(&c.img);
	check_in("fl_server_new", call_server_new, &c, &so, sizeof(so), NULL_EINVAL);
	check_in("fl_store_remote_new", call_remote_new, &c, &ro, sizeof(ro), NULL_EINVAL);
	/* Built without Redis, these answer -EOPNOTSUPP to anything
	 * (test/redis/disabled.c checks that). */
	if (FL_HAVE_REDIS) {
		check_in("fl_store_redis_new", call_redis_new, &c, &rdo, sizeof(rdo), NULL_EINVAL);
		check_in("fl_redis_push", call_redis_push, &c, &rdo, sizeof(rdo), NULL_EINVAL);
		check_in("fl_redis_regions", call_redis_regions, &c, &rdo, sizeof(rdo), NULL_EINVAL);
	}
	/* NULL options use $FAULTLINED_SOCKET: point it where no daemon is. */
	T_ASSERT(setenv("FAULTLINED_SOCKET", "/nonexistent/faultlined.sock", 1) == 0);
	check_in("fl_client_connect", call_client_connect, &c, &clo, sizeof(clo), -ENOENT);

	/* A live server and a remote store on it, for the out structs. The
	 * server holds its own reference to the image: close ours first. */
	T_OK(fl_server_new(c.img.img, &so, &c.srv));
	c.img.img = fl_image_close(c.img.img);
	T_ASSERT(pthread_create(&th, NULL, run_server, c.srv) == 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fl_server_port(c.srv));
	ro.addr = addr;
	ro.timeout_ms = t_scaled_ms(5000);
	T_OK(fl_store_remote_new(&ro, &c.remote));
	{
		struct fl_store_iov iov;
		uint8_t page[4096];
		iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page) };
		T_OK(fl_store_read(c.remote, &iov, 1));
		T_ASSERT(page[0] == 7 && page[4095] == 7);
	}
	check_out("fl_server_stats", call_server_stats, &c, sizeof(struct fl_server_stats), false);
	check_out("FL_REMOTE_CTL_STATS", call_remote_stats, &c, sizeof(struct fl_remote_stats), false);
	fl_store_unref(c.remote);
	T_OK(fl_server_stop(c.srv));
	T_ASSERT(pthread_join(th, NULL) == 0);
	fl_server_free(c.srv);
	img_teardown(&c.img);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "engine-region", c_engine, NULL, 60 },
	{ "store", c_store, NULL, 30 },
	{ "watch-pagemap", c_watch, NULL, 60 },
	{ "image", c_image, NULL, 60 },
	{ "template-clone", c_clone, NULL, 60 },
	{ "guard", c_guard, NULL, 30 },
	{ "snapshot", c_snapshot, NULL, 60 },
	{ "net-redis-client", c_net, NULL, 120 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
