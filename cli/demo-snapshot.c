// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline demo, part 3: live snapshots of memory that threads keep
 * writing, without fork(). The stall of a copy-on-write snapshot is shown
 * beside the time fork() stops the parent for the same memory, then an
 * incremental snapshot saves only what was written since.
 *
 * The writers keep every page's first and last words equal (the first is
 * written, then a byte in between, then the last), so a page copied while
 * half-written would show up as torn in the image.
 */
#include "demo.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define WRITERS 2
#define FORK_REPS 3

struct snapdemo {
	uint8_t *mem;
	uint64_t npages;
	pthread_rwlock_t lock;
	_Atomic bool stop;
	_Atomic uint64_t writes;
};

static void *writer_main(void *arg)
{
	struct snapdemo *d = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x ^ fl__now_ns();

	while (!atomic_load(&d->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t pg = x % d->npages;
		volatile uint64_t *w = (volatile uint64_t *)(void *)(d->mem + pg * PAGE);

		pthread_rwlock_rdlock(&d->lock);
		uint64_t v = w[0] + 1;
		w[0] = v;
		w[1 + v % 500] = v;
		w[PAGE / 8 - 1] = v;
		pthread_rwlock_unlock(&d->lock);
		if ((atomic_fetch_add(&d->writes, 1) & 63) == 0)
			sched_yield();
	}
	return NULL;
}

static int quiesce(bool pause, void *ctx)
{
	struct snapdemo *d = ctx;

	if (pause)
		pthread_rwlock_wrlock(&d->lock);
	else
		pthread_rwlock_unlock(&d->lock);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Median time the parent spends inside fork() for this memory. */
static uint64_t fork_stall(void)
{
	uint64_t t[FORK_REPS];

	for (int i = 0; i < FORK_REPS; i++) {
		uint64_t t0 = fl__now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);	/* at once: nothing to orphan */
		t[i] = fl__now_ns() - t0;
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	qsort(t, FORK_REPS, sizeof(t[0]), cmp_u64);
	return t[FORK_REPS / 2];
}

static int take(struct snapdemo *d, const char *path, const char *parent, struct fl_watch *w,
		struct fl_snapshot_progress *p)
{
	struct fl_range r = { (uintptr_t)d->mem, d->npages * PAGE };
	struct fl_watch *ws[1] = { w };
	struct fl_snapshot_opts o = {
		.sz = sizeof(o),
		.strategy = FL_SNAPSHOT_COW,
		.ranges = &r,
		.nr_ranges = 1,
		.image_flags = FL_IMAGE_NO_SYNC,
		.parent = parent,
		.watches = ws,
		.quiesce = quiesce,
		.quiesce_ctx = d,
		.creator = "faultline demo",
	};
	struct fl_snapshot *s;
	int ret;

	p->sz = sizeof(*p);
	ret = fl_snapshot_new(path, &o, &s);
	if (ret)
		return ret;
	ret = fl_snapshot_start(s);
	if (!ret)
		ret = fl_snapshot_wait(s, -1, NULL);
	fl_snapshot_progress(s, p);
	fl_snapshot_free(s);
	return ret;
}

/* Every page of the image (through its chain) untorn. */
static int check_untorn(const char *path, uint64_t npages, uint64_t *ret_torn)
{
	struct fl_image *img;
	uint8_t *buf = malloc(512 * PAGE);
	int ret;

	*ret_torn = 0;
	if (!buf)
		return -ENOMEM;
	ret = fl_image_open(path, FL_IMAGE_OPEN_VERIFY, &img);
	for (uint64_t p = 0; !ret && p < npages; p += 512) {
		uint64_t n = npages - p < 512 ? npages - p : 512;
		ret = fl_image_read(img, 0, p, n, buf, NULL);
		for (uint64_t i = 0; !ret && i < n; i++) {
			const uint64_t *w = (const uint64_t *)(const void *)(buf + i * PAGE);
			*ret_torn += w[0] != w[PAGE / 8 - 1];
		}
	}
	if (img)
		fl_image_close(img);
	free(buf);
	return ret;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

int demo_snapshot(const uint8_t *src, uint64_t size, const char *dir)
{
	struct snapdemo d = { .npages = size / PAGE };
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = FL_WATCH_SYNC };
	struct fl_snapshot_progress full = { 0 }, incr = { 0 };
	struct fl_watch *watch = NULL;
	pthread_t th[WRITERS];
	unsigned started = 0;
	char full_path[4300], incr_path[4300], a[32], b[32], c[32];
	uint64_t fork_ns, t0, torn_full = 0, torn_incr = 0;
	void *mem;
	int ret, status = EXIT_ERR;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return cli_fail("demo: mmap", -errno);
	d.mem = mem;
	/* The restored bytes, with every page's guard words zeroed. */
	memcpy(d.mem, src, size);
	for (uint64_t p = 0; p < d.npages; p++) {
		uint64_t *w = (uint64_t *)(void *)(d.mem + p * PAGE);
		w[0] = w[PAGE / 8 - 1] = 0;
	}
	pthread_rwlock_init(&d.lock, NULL);
	snprintf(full_path, sizeof(full_path), "%s/live.img", dir);
	snprintf(incr_path, sizeof(incr_path), "%s/live-incr.img", dir);

	printf("\nlive snapshots of %s while %d threads keep writing it:\n", fmt_bytes(size, a, sizeof(a)), WRITERS);
	for (; started < WRITERS; started++)
		if (pthread_create(&th[started], NULL, writer_main, &d))
			goto out;
	fork_ns = fork_stall();

	/* The watch write-protects the range now, before any pause. */
	ret = fl_watch_new(d.mem, size, &wo, &watch);
	if (ret) {
		cli_fail("demo: fl_watch_new", ret);
		goto out;
	}
	t0 = fl__now_ns();
	ret = take(&d, full_path, NULL, watch, &full);
	if (ret) {
		cli_fail("demo: snapshot", ret);
		goto out;
	}
	fmt_ns(fork_ns, a, sizeof(a));
	printf("  %-24s %10s  (the parent stops while fork() copies its page tables)\n", "fork() stall", a);
	fmt_ns(full.stall_ns, a, sizeof(a));
	fmt_ns(fl__now_ns() - t0, b, sizeof(b));
	printf("  %-24s %10s  (saved in %s; %llu pages saved before a write, no fork, no extra copy)\n",
	       "faultline COW stall", a, b, (unsigned long long)full.pages_cow);

	/* Let them write a while, then save just what changed. */
	usleep(300000);
	ret = take(&d, incr_path, full_path, watch, &incr);
	if (ret) {
		cli_fail("demo: incremental snapshot", ret);
		goto out;
	}
	fmt_ns(incr.stall_ns, a, sizeof(a));
	fmt_bytes(file_size(incr_path), b, sizeof(b));
	fmt_bytes(file_size(full_path), c, sizeof(c));
	printf("  %-24s %10s  (%llu pages written since the full one: %s file vs %s)\n", "incremental stall", a,
	       (unsigned long long)incr.pages_final, b, c);
	status = EXIT_OK;
out:
	atomic_store(&d.stop, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	fl_watch_free(watch);
	if (status == EXIT_OK) {
		ret = check_untorn(full_path, d.npages, &torn_full);
		if (!ret)
			ret = check_untorn(incr_path, d.npages, &torn_incr);
		if (ret || torn_full || torn_incr) {
			cli_error("demo: snapshot images: %s, %llu + %llu torn pages", ret ? strerror(-ret) : "read",
				  (unsigned long long)torn_full, (unsigned long long)torn_incr);
			status = EXIT_ERR;
		} else {
			printf("  both images verified (checksums, and no page caught half-written); "
			       "%llu writes during the demo\n", (unsigned long long)atomic_load(&d.writes));
		}
	}
	unlink(incr_path);
	unlink(full_path);
	munmap(mem, size);
	return status;
}
