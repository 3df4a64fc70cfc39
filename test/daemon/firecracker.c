// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultlined's Firecracker mode (--firecracker-socket, --mem-file): a fake
 * Firecracker does the documented snapshot-resume handshake with raw
 * syscalls, as the VMM does it: a userfaultfd (EVENT_REMOVE requested, for
 * the balloon), guest memory mapped MAP_PRIVATE|MAP_ANONYMOUS (hugetlb for
 * 2 MiB pages) and registered MISSING, then one message on a SOCK_STREAM
 * socket: a JSON array of {"base_host_virt_addr", "size", "offset",
 * "page_size"} (older releases: "page_size_kib") with the uffd as
 * SCM_RIGHTS, and nothing more. The daemon serves each mapping from
 * `offset` in the guest memory file, a file of pattern bytes in the case's
 * scratch directory (80 MiB; guest memory is 32 MiB from offset 0 and
 * 16 MiB from 64 MiB).
 *
 *   handshake-serves   threads fault (from before the handshake) every page
 *   page-size-kib      the older key
 *   balloon-remove     MADV_DONTNEED (REMOVE events): zeros afterwards
 *   writes-private     guest writes are kept, the file never changes
 *   firecracker-exits  VMMs exit or are killed mid-run; the next is served
 *   bad-handshakes     each refused (connection closed), the daemon stays,
 *                      a good handshake right after is served
 *   split-message      the one message arriving in pieces
 *   two-vmms           two VMMs served at once
 *   hugetlb*           2 MiB pages (skipped without free huge pages)
 *   daemon-restart     killed -9 while the vCPUs fault, restarted: resumed
 *   crash-after-handshake  killed at the crash points fc-recorded and
 *                      fc-adopted: the restarted daemon resumes the VM
 */
#include "dutil.h"

#include <dirent.h>
#include <jansson.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#define FC_SEED 0xF1C3u
#define FC_FILE_LEN (80 * U_MIB)
#define FC_MAX_MAPS 4
#define FC_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Where guest memory lies in the memory file: two regions, a gap between. */
struct fc_layout {
	size_t size;
	uint64_t offset;
};
static const struct fc_layout fc_layout2[] = { { 32 * U_MIB, 0 }, { 16 * U_MIB, 64 * U_MIB } };
static const struct fc_layout fc_layout_huge[] = { { 8 * U_MIB, 0 }, { 4 * U_MIB, 64 * U_MIB } };

struct fc_map {
	uint8_t *base;
	size_t size;
	uint64_t offset;
	size_t psz;
	const uint8_t *expect;		/* the file's bytes at offset (NULL: not made) */
};

/* One fake Firecracker: its uffd and guest memory. */
struct fc_vm {
	int uffd;
	size_t n;
	struct fc_map m[FC_MAX_MAPS];
};

struct fc_env {
	struct d_env d;
	char fc_sock[320];
	char mem_file[320];
};

enum fc_key { FC_KEY_BYTES, FC_KEY_KIB };

/* ---- the memory file and the daemon ------------------------------------- */

static void fc_write_file(const char *path, size_t len)
{
	uint8_t *buf = malloc(U_MIB);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	T_ASSERT(buf && fd >= 0, "%s: %s", path, strerror(errno));
	for (size_t off = 0; off < len; off += U_MIB) {
		t_fill_pattern(buf, U_MIB, off, FC_SEED);
		u_write_full(fd, buf, U_MIB);
	}
	T_ASSERT(close(fd) == 0);
	free(buf);
}

static void fc_env_init(struct fc_env *fe)
{
	d_env_init(&fe->d);
	snprintf(fe->fc_sock, sizeof(fe->fc_sock), "%s/fc.sock", fe->d.dir);
	snprintf(fe->mem_file, sizeof(fe->mem_file), "%s/guest.mem", fe->d.dir);
	fc_write_file(fe->mem_file, FC_FILE_LEN);
}

/* faultlined with the manager socket (for stats) and the Firecracker socket. */
static void fc_start(struct fc_env *fe)
{
	const char *args[] = { "--firecracker-socket", fe->fc_sock, "--mem-file", fe->mem_file, NULL };

	d_start_argv(&fe->d, args);
}

static void fc_assert_alive(const struct fc_env *fe)
{
	int st = 0;
	pid_t w = waitpid(fe->d.pid, &st, WNOHANG);

	if (w < 0 && errno == ECHILD)	/* a forked VMM: not our child */
		T_ASSERT(kill(fe->d.pid, 0) == 0, "faultlined is gone");
	else
		T_ASSERT(w == 0, "faultlined exited (status 0x%x)", st);
}

/* ---- the fake Firecracker ----------------------------------------------- */

static int fc_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == ENOSYS)
		t_skip("kernel lacks the userfaultfd syscall");
	/* Not allowed here (seccomp, a container): this machine, not the kernel. */
	if (fd < 0 && errno == EPERM)
		t_skip_resource("userfaultfd: %s", strerror(errno));
	T_ASSERT(fd >= 0, "userfaultfd: %s", strerror(errno));
	T_ASSERT(ioctl(fd, UFFDIO_API, &api) == 0, "UFFDIO_API: %s", strerror(errno));
	return fd;
}

/* Map and register guest memory as Firecracker does on snapshot resume. */
static void fc_vm_new(struct fc_vm *vm, const struct fc_layout *lay, size_t n, bool huge)
{
	T_ASSERT(n <= FC_MAX_MAPS);
	memset(vm, 0, sizeof(*vm));
	vm->uffd = fc_uffd();
	vm->n = n;
	for (size_t i = 0; i < n; i++) {
		struct fc_map *m = &vm->m[i];
		struct uffdio_register reg;
		void *p = mmap(NULL, lay[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (huge ? MAP_HUGETLB : 0), -1, 0);

		T_ASSERT(p != MAP_FAILED, "mmap guest memory %zu: %s", i, strerror(errno));
		*m = (struct fc_map){ .base = p, .size = lay[i].size, .offset = lay[i].offset,
				      .psz = huge ? U_HPAGE : U_PAGE };
		reg = (struct uffdio_register){ .range = { (uintptr_t)p, lay[i].size },
						.mode = UFFDIO_REGISTER_MODE_MISSING };
		T_ASSERT(ioctl(vm->uffd, UFFDIO_REGISTER, &reg) == 0, "UFFDIO_REGISTER: %s", strerror(errno));
	}
}

/* The file's bytes for every mapping (to compare guest memory with). */
static void fc_vm_expect(struct fc_vm *vm)
{
	for (size_t i = 0; i < vm->n; i++)
		vm->m[i].expect = u_image(vm->m[i].size, vm->m[i].offset, FC_SEED);
}

static void fc_vm_free(struct fc_vm *vm, bool free_expect)
{
	for (size_t i = 0; i < vm->n; i++) {
		munmap(vm->m[i].base, vm->m[i].size);
		if (free_expect && vm->m[i].expect)
			munmap((void *)(uintptr_t)vm->m[i].expect, vm->m[i].size);
	}
	if (vm->uffd >= 0)
		close(vm->uffd);
	vm->uffd = -1;
	vm->n = 0;
}

/* The handshake's JSON, as Firecracker writes it (json_decref it). */
static json_t *fc_json(const struct fc_vm *vm, enum fc_key key)
{
	json_t *a = json_array();

	T_ASSERT(a);
	for (size_t i = 0; i < vm->n; i++) {
		const struct fc_map *m = &vm->m[i];
		json_t *o = json_pack("{s:I,s:I,s:I,s:I}", "base_host_virt_addr", (json_int_t)(uintptr_t)m->base,
				      "size", (json_int_t)m->size, "offset", (json_int_t)m->offset,
				      key == FC_KEY_KIB ? "page_size_kib" : "page_size",
				      (json_int_t)(key == FC_KEY_KIB ? m->psz / 1024 : m->psz));
		T_ASSERT(o);
		T_ASSERT(json_array_append_new(a, o) == 0);
	}
	return a;
}

static char *fc_dumps(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	T_ASSERT(s);
	return s;
}

/* Connect as Firecracker does (the socket may not be bound quite yet). */
static int fc_connect(const struct fc_env *fe)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	uint64_t end = t_deadline_ms(10000);

	T_ASSERT(strlen(fe->fc_sock) < sizeof(a.sun_path));
	memcpy(a.sun_path, fe->fc_sock, strlen(fe->fc_sock) + 1);
	for (;;) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		T_ASSERT(s >= 0);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			return s;
		T_ASSERT(errno == ENOENT || errno == ECONNREFUSED, "connect %s: %s", fe->fc_sock, strerror(errno));
		close(s);
		T_ASSERT(t_now_ns() < end, "%s: not accepting after 10 s", fe->fc_sock);
		t_sleep_ms(5);
	}
}

/* One sendmsg (continued if the stream takes less), fd (if >= 0) with the first byte. */
static int fc_send(int sock, const void *buf, size_t len, int fd)
{
	size_t done = 0;

	while (done < len) {
		struct iovec iov = { (uint8_t *)(uintptr_t)buf + done, len - done };
		size_t n = 0;
		int r = fl__send_fd(sock, &iov, 1, done == 0 ? fd : -1, &n);

		if (r)
			return r;
		done += n;
	}
	return 0;
}

/* The whole handshake; returns the socket (Firecracker keeps it open). */
static int fc_handshake(const struct fc_env *fe, const struct fc_vm *vm, enum fc_key key)
{
	json_t *j = fc_json(vm, key);
	char *msg = fc_dumps(j);
	int s = fc_connect(fe);

	T_OK(fc_send(s, msg, strlen(msg), vm->uffd));
	free(msg);
	json_decref(j);
	return s;
}

/* ---- stats ----------------------------------------------------------------- */

static json_t *fc_stats(const struct fc_env *fe)
{
	char *s = NULL;
	json_error_t err;
	json_t *j;

	T_OK(fl_manager_stats(fe->d.sock, t_scaled_ms(5000), &s));
	j = json_loads(s, 0, &err);
	T_ASSERT(j, "stats JSON: %s", err.text);
	free(s);
	return j;
}

/* The newest Firecracker session of `pid` in a stats document, or NULL. */
static json_t *fc_client(json_t *st, pid_t pid)
{
	json_t *c, *best = NULL;
	size_t i;

	json_array_foreach(json_object_get(st, "clients"), i, c) {
		if (json_integer_value(json_object_get(c, "pid")) != pid ||
		    strcmp(json_string_value(json_object_get(c, "kind")) ?: "", "firecracker"))
			continue;
		if (!best || json_integer_value(json_object_get(c, "id")) >
				     json_integer_value(json_object_get(best, "id")))
			best = c;
	}
	return best;
}

static long long fc_daemon_stat(json_t *st, const char *key)
{
	json_t *v = json_object_get(json_object_get(st, "daemon"), key);

	T_ASSERT(json_is_integer(v), "stats: no daemon.%s", key);
	return json_integer_value(v);
}

static long long fc_serving_stat(json_t *c, const char *key)
{
	json_t *v = json_object_get(json_object_get(c, "serving"), key);

	T_ASSERT(json_is_integer(v), "stats: no serving.%s", key);
	return json_integer_value(v);
}

/* Wait until the daemon serves `pid`'s handshake (its mappings registered). */
static void fc_wait_serving(const struct fc_env *fe, pid_t pid, size_t nmaps, uint64_t bytes)
{
	uint64_t end = t_deadline_ms(10000);

	for (;;) {
		json_t *st = fc_stats(fe), *c = fc_client(st, pid);
		bool ok = c && json_is_object(json_object_get(c, "serving"));

		if (ok) {
			T_ASSERT_EQ(fc_serving_stat(c, "regions"), nmaps);
			T_ASSERT_EQ(fc_serving_stat(c, "bytes"), bytes);
			T_ASSERT_EQ(json_integer_value(json_object_get(c, "ranges")), nmaps);
		}
		json_decref(st);
		if (ok)
			return;
		fc_assert_alive(fe);
		T_ASSERT(t_now_ns() < end, "pid %d: the handshake is not served after 10 s", (int)pid);
		t_sleep_ms(5);
	}
}

static uint64_t fc_vm_bytes(const struct fc_vm *vm)
{
	uint64_t b = 0;

	for (size_t i = 0; i < vm->n; i++)
		b += vm->m[i].size;
	return b;
}

/* ---- checking guest memory ------------------------------------------------- */

/* Assert [off, off+len) of mapping mi equals the file (or zeros), page by page, SIGBUS-safe. */
static void fc_check(const struct fc_vm *vm, size_t mi, size_t off, size_t len, bool zeros)
{
	const struct fc_map *m = &vm->m[mi];
	uint8_t *zero = calloc(1, m->psz);

	T_ASSERT(zero && m->expect);
	T_ASSERT(off % m->psz == 0 && len % m->psz == 0 && off + len <= m->size);
	for (size_t o = off; o < off + len; o += m->psz) {
		int r = u_probe_cmp(m->base + o, zeros ? zero : m->expect + o, m->psz);
		T_ASSERT(r == 0, "mapping %zu (file offset %llu), page %zu: %s", mi,
			 (unsigned long long)m->offset, o / m->psz,
			 r < 0 ? "SIGBUS" : zeros ? "not zeros" : u_all_zero(m->base + o, m->psz) ? "zeros" : "wrong bytes");
	}
	free(zero);
}

static void fc_check_all(const struct fc_vm *vm)
{
	for (size_t i = 0; i < vm->n; i++)
		fc_check(vm, i, 0, vm->m[i].size, false);
}

/* Readers: thread t reads every page of every mapping (mapping t % n first),
 * thread 0 forward, 1 backward, the rest in random orders. */
struct fc_reader {
	pthread_t tid;
	unsigned idx;
	const struct fc_vm *vm;
	pthread_barrier_t *bar;
	long bad_map, bad_page;
	int bad_kind;			/* -1 SIGBUS, 1 wrong bytes, 2 zeros */
};

static void *fc_reader_main(void *arg)
{
	struct fc_reader *rd = arg;
	const struct fc_vm *vm = rd->vm;
	enum u_order order = rd->idx == 0 ? U_SEQ : rd->idx == 1 ? U_REV : U_RANDOM;

	rd->bad_map = rd->bad_page = -1;
	pthread_barrier_wait(rd->bar);
	for (size_t k = 0; k < vm->n && rd->bad_map < 0; k++) {
		size_t mi = (rd->idx + k) % vm->n;
		const struct fc_map *m = &vm->m[mi];
		size_t npages = m->size / m->psz;
		uint32_t *perm = u_perm(npages, order, 7919u * (rd->idx + 1) + (unsigned)k);

		for (size_t i = 0; i < npages; i++) {
			size_t off = (size_t)perm[i] * m->psz;
			int r = u_probe_cmp(m->base + off, m->expect + off, m->psz);
			if (r) {
				rd->bad_map = (long)mi;
				rd->bad_page = (long)perm[i];
				rd->bad_kind = r < 0 ? -1 : u_all_zero(m->base + off, m->psz) ? 2 : 1;
				break;
			}
		}
		free(perm);
	}
	return NULL;
}

struct fc_readers {
	struct fc_reader rd[16];
	pthread_barrier_t bar;
	unsigned n;
};

static void fc_readers_start(struct fc_readers *r, const struct fc_vm *vm, unsigned n)
{
	T_ASSERT(n >= 1 && n <= 16);
	r->n = n;
	pthread_barrier_init(&r->bar, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		r->rd[i] = (struct fc_reader){ .idx = i, .vm = vm, .bar = &r->bar };
		T_ASSERT(pthread_create(&r->rd[i].tid, NULL, fc_reader_main, &r->rd[i]) == 0);
	}
}

static void fc_readers_join(struct fc_readers *r)
{
	for (unsigned i = 0; i < r->n; i++)
		pthread_join(r->rd[i].tid, NULL);
	pthread_barrier_destroy(&r->bar);
	for (unsigned i = 0; i < r->n; i++)
		T_ASSERT(r->rd[i].bad_map < 0, "reader %u: mapping %ld page %ld: %s", i, r->rd[i].bad_map,
			 r->rd[i].bad_page,
			 r->rd[i].bad_kind < 0 ? "SIGBUS" : r->rd[i].bad_kind == 2 ? "zeros" : "wrong bytes");
}

static void fc_read_threads(const struct fc_vm *vm, unsigned n)
{
	struct fc_readers r;

	fc_readers_start(&r, vm, n);
	fc_readers_join(&r);
}

static void fc_assert_no_zero_page(const struct fc_vm *vm)
{
	for (size_t i = 0; i < vm->n; i++)
		for (size_t o = 0; o < vm->m[i].size; o += vm->m[i].psz)
			T_ASSERT(!u_all_zero(vm->m[i].base + o, vm->m[i].psz), "mapping %zu page %zu is zeros", i,
				 o / vm->m[i].psz);
}

/* ---- cases ---------------------------------------------------------------- */

/*
 * A served VMM: every page read by `threads` threads, checked. With `early`
 * the readers start before the handshake is even sent (their faults wait in
 * the uffd), as vCPUs resume right after it; otherwise after it is served.
 */
static void fc_serve_and_read(const struct fc_env *fe, const struct fc_layout *lay, size_t n, bool huge,
			      enum fc_key key, unsigned threads, bool early)
{
	struct fc_readers rd;
	struct fc_vm vm;
	json_t *st, *c;
	int s;

	fc_vm_new(&vm, lay, n, huge);
	fc_vm_expect(&vm);
	if (early) {
		fc_readers_start(&rd, &vm, threads);
		t_sleep_ms(50);
	}
	s = fc_handshake(fe, &vm, key);
	if (!early) {
		fc_wait_serving(fe, getpid(), n, fc_vm_bytes(&vm));
		fc_readers_start(&rd, &vm, threads);
	}
	fc_readers_join(&rd);
	fc_wait_serving(fe, getpid(), n, fc_vm_bytes(&vm));
	fc_check_all(&vm);
	fc_assert_no_zero_page(&vm);
	st = fc_stats(fe);
	c = fc_client(st, getpid());
	T_ASSERT(c);
	T_ASSERT(fc_serving_stat(c, "faults") > 0);
	T_ASSERT(fc_serving_stat(c, "pages_resolved") > 0);
	T_ASSERT_EQ(fc_serving_stat(c, "pages_poisoned"), 0);
	t_log("served: %lld faults, %lld pages resolved, %lld bytes read", fc_serving_stat(c, "faults"),
	      fc_serving_stat(c, "pages_resolved"), fc_serving_stat(c, "bytes_read"));
	json_decref(st);
	close(s);
	fc_vm_free(&vm, true);
}

static int case_handshake_serves(void *arg)
{
	struct fc_env fe;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_serve_and_read(&fe, fc_layout2, 2, false, FC_KEY_BYTES, 6, true);
	fc_assert_alive(&fe);
	d_env_free(&fe.d);
	return T_PASS;
}

static int case_page_size_kib(void *arg)
{
	struct fc_env fe;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_serve_and_read(&fe, fc_layout2, 2, false, FC_KEY_KIB, 3, true);
	fc_assert_alive(&fe);
	d_env_free(&fe.d);
	return T_PASS;
}

static int case_balloon_remove(void *arg)
{
	struct fc_env fe;
	struct fc_vm vm;
	json_t *st;
	long long removes;
	int s;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_vm_new(&vm, fc_layout2, 2, false);
	fc_vm_expect(&vm);
	s = fc_handshake(&fe, &vm, FC_KEY_BYTES);
	fc_wait_serving(&fe, getpid(), 2, fc_vm_bytes(&vm));

	/* Inflation over pages the guest had: they read zeros afterwards. */
	fc_check(&vm, 0, 0, vm.m[0].size, false);
	T_ASSERT(madvise(vm.m[0].base + 4 * U_MIB, 2 * U_MIB, MADV_DONTNEED) == 0, "%s", strerror(errno));
	fc_check(&vm, 0, 4 * U_MIB, 2 * U_MIB, true);
	fc_check(&vm, 0, 0, 4 * U_MIB, false);
	fc_check(&vm, 0, 6 * U_MIB, vm.m[0].size - 6 * U_MIB, false);

	/* Over pages never read (not page-run aligned): zeros, not the file. */
	T_ASSERT(madvise(vm.m[1].base + 2 * U_MIB + 3 * U_PAGE, U_MIB + 5 * U_PAGE, MADV_DONTNEED) == 0);
	fc_check(&vm, 1, 0, 2 * U_MIB + 3 * U_PAGE, false);
	fc_check(&vm, 1, 2 * U_MIB + 3 * U_PAGE, U_MIB + 5 * U_PAGE, true);
	fc_check(&vm, 1, 3 * U_MIB + 8 * U_PAGE, vm.m[1].size - 3 * U_MIB - 8 * U_PAGE, false);

	/* Deflate and use again: the guest's writes stick; inflate again: zeros. */
	memset(vm.m[0].base + 4 * U_MIB, 0x5a, U_MIB);
	for (size_t o = 0; o < U_MIB; o += U_PAGE)
		T_ASSERT(vm.m[0].base[4 * U_MIB + o] == 0x5a && vm.m[0].base[4 * U_MIB + o + U_PAGE - 1] == 0x5a);
	fc_check(&vm, 0, 5 * U_MIB, U_MIB, true);
	T_ASSERT(madvise(vm.m[0].base + 4 * U_MIB, U_MIB, MADV_DONTNEED) == 0);
	fc_check(&vm, 0, 4 * U_MIB, 2 * U_MIB, true);

	/* A single page at the very end of a mapping. */
	T_ASSERT(madvise(vm.m[1].base + vm.m[1].size - U_PAGE, U_PAGE, MADV_DONTNEED) == 0);
	fc_check(&vm, 1, vm.m[1].size - U_PAGE, U_PAGE, true);
	fc_check(&vm, 1, vm.m[1].size - 2 * U_PAGE, U_PAGE, false);

	st = fc_stats(&fe);
	removes = fc_daemon_stat(st, "events_remove");
	T_ASSERT(removes >= 4, "events_remove = %lld", removes);
	T_ASSERT_EQ(fc_serving_stat(fc_client(st, getpid()), "pages_poisoned"), 0);
	json_decref(st);
	fc_assert_alive(&fe);
	close(s);
	fc_vm_free(&vm, true);
	d_env_free(&fe.d);
	return T_PASS;
}

static int case_writes_private(void *arg)
{
	struct fc_env fe;
	struct fc_vm vm;
	uint8_t *mine = u_image(U_MIB, 0, 0xBEEF), *file;
	struct fc_map *a, *b;
	int s, fd;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_vm_new(&vm, fc_layout2, 2, false);
	fc_vm_expect(&vm);
	a = &vm.m[0];
	b = &vm.m[1];
	s = fc_handshake(&fe, &vm, FC_KEY_BYTES);
	fc_wait_serving(&fe, getpid(), 2, fc_vm_bytes(&vm));

	/* Read, then overwritten: the first MiB of mapping 0. */
	fc_check(&vm, 0, 0, U_MIB, false);
	memcpy(a->base, mine, U_MIB);
	/* Written before ever read (a write fault): a MiB of mapping 1. */
	memcpy(b->base + 4 * U_MIB, mine, U_MIB);
	/* One byte in each of 64 pages never read: the rest of the page is the file's. */
	for (size_t p = 0; p < 64; p++)
		a->base[8 * U_MIB + p * U_PAGE + 100] ^= 0xff;

	/* Everything the guest wrote is kept, everything else is the file. */
	T_ASSERT(u_probe_cmp(a->base, mine, U_MIB) == 0, "mapping 0: our writes are lost");
	T_ASSERT(u_probe_cmp(b->base + 4 * U_MIB, mine, U_MIB) == 0, "mapping 1: our writes are lost");
	for (size_t p = 0; p < 64; p++) {
		uint8_t *pg = a->base + 8 * U_MIB + p * U_PAGE;
		const uint8_t *x = a->expect + 8 * U_MIB + p * U_PAGE;
		T_ASSERT((pg[100] ^ x[100]) == 0xff, "page %zu: the written byte is lost", p);
		T_ASSERT(memcmp(pg, x, 100) == 0 && memcmp(pg + 101, x + 101, U_PAGE - 101) == 0,
			 "page %zu: not the file's bytes around the write", p);
	}
	fc_check(&vm, 0, U_MIB, 7 * U_MIB, false);
	fc_check(&vm, 0, 8 * U_MIB + 64 * U_PAGE, a->size - 8 * U_MIB - 64 * U_PAGE, false);
	fc_check(&vm, 1, 0, 4 * U_MIB, false);
	fc_check(&vm, 1, 5 * U_MIB, b->size - 5 * U_MIB, false);
	/* Again, after all of it was faulted in. */
	T_ASSERT(memcmp(a->base, mine, U_MIB) == 0 && memcmp(b->base + 4 * U_MIB, mine, U_MIB) == 0);

	/* The file is as it was. */
	file = malloc(FC_FILE_LEN);
	T_ASSERT(file);
	fd = open(fe.mem_file, O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0);
	T_ASSERT(u_read_full(fd, file, FC_FILE_LEN, 5000));
	close(fd);
	{
		long long bad = t_check_pattern(file, FC_FILE_LEN, 0, FC_SEED);
		T_ASSERT(bad < 0, "the memory file changed at offset %lld", bad);
	}
	free(file);
	fc_assert_alive(&fe);
	close(s);
	fc_vm_free(&vm, true);
	munmap(mine, U_MIB);
	d_env_free(&fe.d);
	return T_PASS;
}

/* ---- firecracker-exits ------------------------------------------------------ */

struct fc_dying {
	const struct fc_env *fe;
	const uint8_t *expect[FC_MAX_MAPS];
	int progress_fd;		/* -1: exit by itself; else write a byte there and read on */
	_Atomic long pages, bad;
	const struct fc_vm *vm;
};

static void *fc_dying_reader(void *arg)
{
	struct fc_dying *dy = arg;
	const struct fc_vm *vm = dy->vm;
	unsigned seed = (unsigned)(uintptr_t)pthread_self();

	for (;;) {
		size_t mi = (size_t)rand_r(&seed) % vm->n;
		const struct fc_map *m = &vm->m[mi];
		size_t off = (size_t)rand_r(&seed) % (m->size / m->psz) * m->psz;
		if (u_probe_cmp(m->base + off, m->expect + off, m->psz))
			atomic_fetch_add(&dy->bad, 1);
		atomic_fetch_add(&dy->pages, 1);
	}
	return NULL;
}

/* A VMM that dies with faults in flight: by its own exit, or SIGKILL. */
static int fc_dying_vmm(void *arg)
{
	struct fc_dying *dy = arg;
	struct fc_vm vm;
	pthread_t t[4];
	uint64_t end;

	fc_vm_new(&vm, fc_layout2, 2, false);
	for (size_t i = 0; i < vm.n; i++)
		vm.m[i].expect = dy->expect[i];
	dy->vm = &vm;
	(void)fc_handshake(dy->fe, &vm, FC_KEY_BYTES);
	fc_wait_serving(dy->fe, getpid(), 2, fc_vm_bytes(&vm));
	for (int i = 0; i < 4; i++)
		T_ASSERT(pthread_create(&t[i], NULL, fc_dying_reader, dy) == 0);
	end = t_deadline_ms(10000);
	while (atomic_load(&dy->pages) < 2000 && t_now_ns() < end)
		t_sleep_ms(1);
	T_ASSERT(atomic_load(&dy->pages) >= 2000, "only %ld pages read in 10 s", atomic_load(&dy->pages));
	T_ASSERT(atomic_load(&dy->bad) == 0, "%ld pages were wrong", atomic_load(&dy->bad));
	if (dy->progress_fd >= 0) {
		u_write_full(dy->progress_fd, "x", 1);
		for (;;)
			pause();
	}
	_exit(T_PASS);	/* with the readers still faulting */
}

/* Wait until the daemon has closed every session of `pid`. */
static void fc_wait_gone(const struct fc_env *fe, pid_t pid)
{
	uint64_t end = t_deadline_ms(10000);

	for (;;) {
		json_t *st = fc_stats(fe);
		bool gone = fc_client(st, pid) == NULL;
		json_decref(st);
		if (gone)
			return;
		fc_assert_alive(fe);
		T_ASSERT(t_now_ns() < end, "the session of pid %d is still there 10 s after it died", (int)pid);
		t_sleep_ms(10);
	}
}

static int case_firecracker_exits(void *arg)
{
	struct fc_env fe;
	struct fc_dying dy = { .fe = &fe, .progress_fd = -1 };
	pid_t pid1, pid2;
	int st, pfd[2];
	char b;
	json_t *stats;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	/* The file's bytes, made once and inherited by the VMMs. */
	for (size_t i = 0; i < 2; i++)
		dy.expect[i] = u_image(fc_layout2[i].size, fc_layout2[i].offset, FC_SEED);

	/* 1: exits by itself with its readers mid-fault. */
	fflush(NULL);
	pid1 = fork();
	T_ASSERT(pid1 >= 0);
	if (pid1 == 0)
		_exit(fc_dying_vmm(&dy));
	T_ASSERT(waitpid(pid1, &st, 0) == pid1);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "first VMM: status 0x%x", st);
	fc_wait_gone(&fe, pid1);
	fc_assert_alive(&fe);

	/* 2: killed (a crash) while its readers fault. */
	T_ASSERT(pipe2(pfd, O_CLOEXEC) == 0);
	dy.progress_fd = pfd[1];
	fflush(NULL);
	pid2 = fork();
	T_ASSERT(pid2 >= 0);
	if (pid2 == 0) {
		close(pfd[0]);
		_exit(fc_dying_vmm(&dy));
	}
	close(pfd[1]);
	T_ASSERT(u_read_full(pfd[0], &b, 1, 20000), "second VMM made no progress");
	close(pfd[0]);
	kill(pid2, SIGKILL);
	T_ASSERT(waitpid(pid2, &st, 0) == pid2);
	T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "second VMM: status 0x%x", st);
	fc_wait_gone(&fe, pid2);
	fc_assert_alive(&fe);

	/* 3: VMMs gone before their handshake was looked at, or without one. */
	for (int k = 0; k < 4; k++) {
		pid_t q;
		fflush(NULL);
		q = fork();
		T_ASSERT(q >= 0);
		if (q == 0) {
			struct fc_vm vm;
			fc_vm_new(&vm, fc_layout2, 2, false);
			if (k < 3)
				(void)fc_handshake(&fe, &vm, FC_KEY_BYTES);
			else
				(void)fc_connect(&fe);
			_exit(0);
		}
		T_ASSERT(waitpid(q, &st, 0) == q && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
		fc_wait_gone(&fe, q);
		fc_assert_alive(&fe);
	}

	/* 4: a new VMM (this process) is served in full. */
	fc_serve_and_read(&fe, fc_layout2, 2, false, FC_KEY_BYTES, 4, false);
	stats = fc_stats(&fe);
	T_ASSERT(fc_client(stats, getpid()));
	T_ASSERT(!fc_client(stats, pid1) && !fc_client(stats, pid2));
	T_ASSERT_EQ(fc_daemon_stat(stats, "clients"), 1);
	/* Only the silent one may count (EOF before its exit was seen). */
	T_ASSERT(fc_daemon_stat(stats, "bad_messages") <= 1);
	json_decref(stats);
	fc_assert_alive(&fe);
	for (size_t i = 0; i < 2; i++)
		munmap((void *)(uintptr_t)dy.expect[i], fc_layout2[i].size);
	d_env_free(&fe.d);
	return T_PASS;
}

/* ---- bad handshakes ------------------------------------------------------- */

enum fc_bad_kind {
	BAD_JSON,		/* the good JSON, mutated, with the uffd */
	BAD_TEXT,		/* `text`, with the uffd */
	BAD_NOFD,		/* the good JSON, no fd */
	BAD_PIPE,		/* the good JSON, a pipe for the uffd */
	BAD_GARBAGE,		/* 100 KiB of random bytes, with the uffd */
	BAD_TRUNCATED,		/* half the good JSON, then shutdown(SHUT_WR) */
	BAD_STALLED,		/* half the good JSON, then silence */
};

struct fc_bad {
	const char *name;
	enum fc_bad_kind kind;
	const char *text;
	json_t *(*mutate)(json_t *root);
};

/* Not an array from its first byte: refused at once, not after a timeout. */
static bool fc_bad_quick(const struct fc_bad *bad, const char *msg)
{
	return (bad->kind == BAD_TEXT || bad->kind == BAD_JSON) && msg[0] != '[';
}

static json_t *fc_elem(json_t *root, size_t i)
{
	json_t *o = json_array_get(root, i);
	T_ASSERT(json_is_object(o));
	return o;
}

static json_t *mut_object(json_t *root)
{
	json_t *o = json_incref(fc_elem(root, 0));
	json_decref(root);
	return o;
}
static json_t *mut_empty(json_t *root)
{
	json_array_clear(root);
	return root;
}
static json_t *mut_no_offset(json_t *root)
{
	json_object_del(fc_elem(root, 1), "offset");
	return root;
}
static json_t *mut_no_size(json_t *root)
{
	json_object_del(fc_elem(root, 0), "size");
	return root;
}
static json_t *mut_no_base(json_t *root)
{
	json_object_del(fc_elem(root, 1), "base_host_virt_addr");
	return root;
}
static json_t *mut_no_page_size(json_t *root)
{
	json_object_del(fc_elem(root, 0), "page_size");
	return root;
}
static json_t *mut_page_size_12345(json_t *root)
{
	json_object_set_new(fc_elem(root, 0), "page_size", json_integer(12345));
	return root;
}
static json_t *mut_beyond_file(json_t *root)
{
	/* 16 MiB at 72 MiB of an 80 MiB file */
	json_object_set_new(fc_elem(root, 1), "offset", json_integer(72 << 20));
	return root;
}
static json_t *mut_offset_past_end(json_t *root)
{
	json_object_set_new(fc_elem(root, 1), "offset", json_integer((json_int_t)1 << 40));
	return root;
}
static json_t *mut_unaligned_base(json_t *root)
{
	json_t *o = fc_elem(root, 1);
	json_object_set_new(o, "base_host_virt_addr",
			    json_integer(json_integer_value(json_object_get(o, "base_host_virt_addr")) + 2048));
	return root;
}
static json_t *mut_unaligned_offset(json_t *root)
{
	json_object_set_new(fc_elem(root, 1), "offset", json_integer((64 << 20) + 512));
	return root;
}
static json_t *mut_zero_size(json_t *root)
{
	json_object_set_new(fc_elem(root, 0), "size", json_integer(0));
	return root;
}
static json_t *mut_negative_size(json_t *root)
{
	json_object_set_new(fc_elem(root, 0), "size", json_integer(-4096));
	return root;
}
static json_t *mut_string_size(json_t *root)
{
	json_object_set_new(fc_elem(root, 0), "size", json_string("33554432"));
	return root;
}
static json_t *mut_overlap(json_t *root)
{
	/* Both entries describe the first mapping's memory. */
	json_t *o = fc_elem(root, 1);
	json_object_set(o, "base_host_virt_addr", json_object_get(fc_elem(root, 0), "base_host_virt_addr"));
	return root;
}
static json_t *mut_too_many(json_t *root)
{
	while (json_array_size(root) < 65)
		json_array_append_new(root, json_deep_copy(fc_elem(root, 0)));
	return root;
}
static json_t *mut_elem_not_object(json_t *root)
{
	json_array_set_new(root, 1, json_integer(7));
	return root;
}

static const struct fc_bad fc_bads[] = {
	{ "not-json", BAD_TEXT, "this is not JSON, it is a handshake from nowhere\n", NULL },
	{ "json-number", BAD_TEXT, "42", NULL },
	{ "json-string", BAD_TEXT, "\"[{}]\"", NULL },
	{ "duplicate-key", BAD_TEXT,
	  "[{\"base_host_virt_addr\":4096,\"size\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}]", NULL },
	{ "not-array", BAD_JSON, NULL, mut_object },
	{ "empty-array", BAD_JSON, NULL, mut_empty },
	{ "element-not-object", BAD_JSON, NULL, mut_elem_not_object },
	{ "missing-offset", BAD_JSON, NULL, mut_no_offset },
	{ "missing-size", BAD_JSON, NULL, mut_no_size },
	{ "missing-base", BAD_JSON, NULL, mut_no_base },
	{ "missing-page-size", BAD_JSON, NULL, mut_no_page_size },
	{ "page-size-12345", BAD_JSON, NULL, mut_page_size_12345 },
	{ "beyond-file", BAD_JSON, NULL, mut_beyond_file },
	{ "offset-past-end", BAD_JSON, NULL, mut_offset_past_end },
	{ "unaligned-base", BAD_JSON, NULL, mut_unaligned_base },
	{ "unaligned-offset", BAD_JSON, NULL, mut_unaligned_offset },
	{ "zero-size", BAD_JSON, NULL, mut_zero_size },
	{ "negative-size", BAD_JSON, NULL, mut_negative_size },
	{ "string-size", BAD_JSON, NULL, mut_string_size },
	{ "overlapping", BAD_JSON, NULL, mut_overlap },
	{ "too-many-mappings", BAD_JSON, NULL, mut_too_many },
	{ "no-fd", BAD_NOFD, NULL, NULL },
	{ "pipe-fd", BAD_PIPE, NULL, NULL },
	{ "garbage-100k", BAD_GARBAGE, NULL, NULL },
	{ "truncated", BAD_TRUNCATED, NULL, NULL },
	{ "stalled", BAD_STALLED, NULL, NULL },
};

/* Refused: the daemon closes the connection; the VMM never touches its memory. */
static void fc_bad_one(const struct fc_env *fe, const struct fc_bad *bad)
{
	struct fc_vm vm;
	json_t *j;
	char *msg = NULL;
	size_t len;
	uint64_t t0;
	int s, fd, pfd[2] = { -1, -1 }, r;

	fc_vm_new(&vm, fc_layout2, 2, false);
	fd = vm.uffd;
	j = fc_json(&vm, FC_KEY_BYTES);
	if (bad->kind == BAD_JSON)
		j = bad->mutate(j);
	if (bad->kind == BAD_TEXT) {
		msg = strdup(bad->text);
		T_ASSERT(msg);
	} else if (bad->kind == BAD_GARBAGE) {
		unsigned seed = 12345;
		msg = malloc(100 << 10);
		T_ASSERT(msg);
		for (size_t i = 0; i < 100 << 10; i++)
			msg[i] = (char)(rand_r(&seed) >> 7);
		msg[0] = '[';	/* not even a plain syntax error at the first byte */
	} else {
		msg = fc_dumps(j);
	}
	json_decref(j);
	len = bad->kind == BAD_GARBAGE ? 100u << 10 : strlen(msg);
	if (bad->kind == BAD_TRUNCATED || bad->kind == BAD_STALLED)
		len /= 2;
	if (bad->kind == BAD_NOFD)
		fd = -1;
	if (bad->kind == BAD_PIPE) {
		T_ASSERT(pipe2(pfd, O_CLOEXEC) == 0);
		fd = pfd[0];
	}
	s = fc_connect(fe);
	r = fc_send(s, msg, len, fd);
	/* The daemon may close before it took 100 KiB of garbage. */
	T_ASSERT(r == 0 || (bad->kind == BAD_GARBAGE && (r == -EPIPE || r == -ECONNRESET)), "%s: send: %s",
		 bad->name, strerror(-r));
	if (bad->kind == BAD_TRUNCATED)
		T_ASSERT(shutdown(s, SHUT_WR) == 0);
	t0 = t_now_ns();
	T_ASSERT(d_raw_closed(s, 5000), "%s: the daemon kept the connection", bad->name);
	if (fc_bad_quick(bad, msg))
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(1000), "%s: refused only after %.0f ms", bad->name,
			 (t_now_ns() - t0) / 1e6);
	close(s);
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
	free(msg);
	fc_vm_free(&vm, false);
}

/* A VMM in a child of the case, with the file's bytes made by the case. */
struct fc_good {
	const struct fc_env *fe;
	const uint8_t *expect[FC_MAX_MAPS];
	bool close_socket;		/* close it right after the handshake */
	_Atomic int *served;		/* shared: wait until `together` VMMs are served */
	int together;
};

static int fc_good_child(void *arg)
{
	const struct fc_good *g = arg;
	struct fc_vm vm;
	int s;

	fc_vm_new(&vm, fc_layout2, 2, false);
	for (size_t i = 0; i < vm.n; i++)
		vm.m[i].expect = g->expect[i];
	s = fc_handshake(g->fe, &vm, FC_KEY_BYTES);
	if (g->close_socket)
		close(s);
	fc_wait_serving(g->fe, getpid(), 2, fc_vm_bytes(&vm));
	if (g->served) {
		uint64_t end = t_deadline_ms(10000);
		atomic_fetch_add(g->served, 1);
		while (atomic_load(g->served) < g->together) {
			T_ASSERT(t_now_ns() < end, "the other VMMs are not served after 10 s");
			t_sleep_ms(1);
		}
	}
	fc_read_threads(&vm, 2);
	fc_check_all(&vm);
	if (!g->close_socket)
		close(s);
	return T_PASS;
}

static int case_bad_handshakes(void *arg)
{
	struct fc_env fe;
	struct fc_good good = { .fe = &fe };
	json_t *st;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	for (size_t i = 0; i < 2; i++)
		good.expect[i] = u_image(fc_layout2[i].size, fc_layout2[i].offset, FC_SEED);

	for (size_t i = 0; i < FC_NELEM(fc_bads); i++) {
		uint64_t t0 = t_now_ns();
		int status;

		fc_bad_one(&fe, &fc_bads[i]);
		fc_assert_alive(&fe);
		st = fc_stats(&fe);
		T_ASSERT(fc_daemon_stat(st, "bad_messages") == (long long)i + 1, "%s: bad_messages = %lld, want %zu",
			 fc_bads[i].name, fc_daemon_stat(st, "bad_messages"), i + 1);
		T_ASSERT(!fc_client(st, getpid()), "%s: the refused session is still listed", fc_bads[i].name);
		json_decref(st);
		/* A good handshake right after it is served in full. */
		status = t_fork_wait(fc_good_child, &good);
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == T_PASS, "good handshake after %s: status 0x%x",
			 fc_bads[i].name, status);
		t_log("%s: refused, then a good handshake served (%.0f ms)", fc_bads[i].name,
		      (t_now_ns() - t0) / 1e6);
	}
	st = fc_stats(&fe);
	T_ASSERT_EQ(fc_daemon_stat(st, "clients"), 0);
	json_decref(st);
	fc_assert_alive(&fe);
	for (size_t i = 0; i < 2; i++)
		munmap((void *)(uintptr_t)good.expect[i], fc_layout2[i].size);
	d_env_free(&fe.d);
	return T_PASS;
}

/* ---- split-message, two-vmms -------------------------------------------- */

/* The stream may deliver the one message in pieces: all of them make it. */
static int case_split_message(void *arg)
{
	struct fc_env fe;
	struct fc_vm vm;
	json_t *j;
	char *body, *msg;
	size_t len;
	int s;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_vm_new(&vm, fc_layout2, 2, false);
	fc_vm_expect(&vm);
	j = fc_json(&vm, FC_KEY_BYTES);
	body = fc_dumps(j);
	json_decref(j);
	T_ASSERT(asprintf(&msg, " \n\t%s\n", body) > 0);	/* JSON allows the whitespace */
	len = strlen(msg);
	s = fc_connect(&fe);
	/* Pauses between the pieces, not deadlines: not scaled, they must stay
	 * well inside faultlined's 2 s for a whole handshake on any machine. */
	T_OK(fc_send(s, msg, 2, vm.uffd));		/* only whitespace so far */
	t_sleep_ms(100);
	T_OK(fc_send(s, msg + 2, len / 3, -1));
	t_sleep_ms(200);
	T_OK(fc_send(s, msg + 2 + len / 3, len - 2 - len / 3, -1));
	fc_wait_serving(&fe, getpid(), 2, fc_vm_bytes(&vm));
	fc_read_threads(&vm, 3);
	fc_check_all(&vm);
	fc_assert_alive(&fe);
	free(body);
	free(msg);
	close(s);
	fc_vm_free(&vm, true);
	d_env_free(&fe.d);
	return T_PASS;
}

/* Two VMMs served at once from the one file; one closes its socket at once. */
static int case_two_vmms(void *arg)
{
	struct fc_env fe;
	struct fc_good g[2];
	_Atomic int *served;
	pid_t pid[2];
	json_t *st;

	(void)arg;
	fc_env_init(&fe);
	fc_start(&fe);
	served = mmap(NULL, U_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(served != MAP_FAILED);
	for (int k = 0; k < 2; k++) {
		g[k] = (struct fc_good){ .fe = &fe, .close_socket = k == 1, .served = served, .together = 2 };
		for (size_t i = 0; i < 2; i++)
			g[k].expect[i] = k ? g[0].expect[i] : u_image(fc_layout2[i].size, fc_layout2[i].offset, FC_SEED);
	}
	for (int k = 0; k < 2; k++) {
		fflush(NULL);
		pid[k] = fork();
		T_ASSERT(pid[k] >= 0);
		if (pid[k] == 0) {
			u_bus_install();
			_exit(fc_good_child(&g[k]));
		}
	}
	for (int k = 0; k < 2; k++) {
		int status;
		T_ASSERT(waitpid(pid[k], &status, 0) == pid[k]);
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == T_PASS, "VMM %d: status 0x%x", k, status);
	}
	for (int k = 0; k < 2; k++)
		fc_wait_gone(&fe, pid[k]);
	st = fc_stats(&fe);
	T_ASSERT_EQ(fc_daemon_stat(st, "bad_messages"), 0);
	T_ASSERT_EQ(fc_daemon_stat(st, "clients"), 0);
	json_decref(st);
	fc_assert_alive(&fe);
	d_env_free(&fe.d);
	return T_PASS;
}

/* ---- hugetlb ---------------------------------------------------------------- */

static int case_hugetlb(void *arg)
{
	struct fc_env fe;
	struct fc_vm vm;
	int s;

	(void)arg;
	t_require(FL_FEATURE_BIT(FL_FEATURE_MISSING_HUGETLBFS));
	t_need_huge(fc_layout_huge[0].size + fc_layout_huge[1].size);
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_vm_new(&vm, fc_layout_huge, 2, true);
	fc_vm_expect(&vm);
	s = fc_handshake(&fe, &vm, FC_KEY_BYTES);
	fc_wait_serving(&fe, getpid(), 2, fc_vm_bytes(&vm));
	fc_read_threads(&vm, 4);
	fc_check_all(&vm);
	fc_assert_no_zero_page(&vm);
	/* The balloon, in huge pages. */
	T_ASSERT(madvise(vm.m[0].base + 2 * U_HPAGE, U_HPAGE, MADV_DONTNEED) == 0, "%s", strerror(errno));
	fc_check(&vm, 0, 2 * U_HPAGE, U_HPAGE, true);
	fc_check(&vm, 0, 0, 2 * U_HPAGE, false);
	fc_check(&vm, 0, 3 * U_HPAGE, vm.m[0].size - 3 * U_HPAGE, false);
	fc_assert_alive(&fe);
	close(s);
	fc_vm_free(&vm, true);
	d_env_free(&fe.d);
	return T_PASS;
}

/* ---- the older key, hugetlb ---------------------------------------------- */

static int case_hugetlb_kib(void *arg)
{
	struct fc_env fe;

	(void)arg;
	t_require(FL_FEATURE_BIT(FL_FEATURE_MISSING_HUGETLBFS));
	t_need_huge(fc_layout_huge[0].size + fc_layout_huge[1].size);
	u_bus_install();
	fc_env_init(&fe);
	fc_start(&fe);
	fc_serve_and_read(&fe, fc_layout_huge, 2, true, FC_KEY_KIB, 2, true);
	fc_assert_alive(&fe);
	d_env_free(&fe.d);
	return T_PASS;
}

/*
 * faultlined is killed (-9) while the VMM's vCPUs fault, and started again:
 * it finds the VMM in its state record, re-takes its uffd with
 * pidfd_getfd(2) (Firecracker never reconnects) and wakes the waiting
 * faults. Every byte arrives, none is zero. Several trials, random moments.
 */
static int case_daemon_restart(void *arg)
{
	unsigned seed = (unsigned)getpid();
	struct fc_env fe;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	for (int trial = 0; trial < 4; trial++) {
		unsigned before = (unsigned)rand_r(&seed) % 30, pause = (unsigned)rand_r(&seed) % 200;
		struct fc_readers rd;
		struct fc_vm vm;
		json_t *st;
		int s;

		fc_start(&fe);
		fc_vm_new(&vm, fc_layout2, FC_NELEM(fc_layout2), false);
		fc_vm_expect(&vm);
		s = fc_handshake(&fe, &vm, FC_KEY_BYTES);
		fc_wait_serving(&fe, getpid(), FC_NELEM(fc_layout2), fc_vm_bytes(&vm));
		fc_readers_start(&rd, &vm, 4);
		t_sleep_ms(before);
		d_stop(&fe.d, SIGKILL);
		t_sleep_ms(pause);
		fc_start(&fe);
		fc_readers_join(&rd);
		fc_check_all(&vm);
		fc_assert_no_zero_page(&vm);
		st = fc_stats(&fe);
		T_ASSERT(fc_client(st, getpid()), "the restarted daemon does not serve the VMM");
		json_decref(st);
		t_log("trial %d: killed after %u ms, restarted after %u ms: every page right", trial, before, pause);
		close(s);
		fc_vm_free(&vm, true);
		d_stop(&fe.d, SIGTERM);
	}
	d_env_free(&fe.d);
	return T_PASS;
}

/*
 * faultlined is killed at the two worst moments of a handshake (named crash
 * points, FAULTLINED_CRASH_AT): right after it wrote its state record and
 * before it adopted the uffd, and right after it adopted the uffd and before
 * it woke the faults. The VMM's vCPUs were already faulting and Firecracker
 * never sends its uffd again: only the record lets the next daemon re-take
 * it. Every byte must arrive, none as zero, and no ".tmp" may be left.
 * (Before the record was written ahead of the adoption, a daemon killed
 * after adopting left no record, and the VM hung for good.)
 */
static int case_crash_after_handshake(void *arg)
{
	static const char *const points[] = { "fc-recorded", "fc-adopted" };
	struct fc_env fe;

	(void)arg;
	u_bus_install();
	fc_env_init(&fe);
	for (size_t i = 0; i < FC_NELEM(points); i++) {
		uint64_t end = t_deadline_ms(10000);
		struct fc_readers rd;
		struct fc_vm vm;
		json_t *st;
		int s, ws = 0;
		DIR *dd;
		struct dirent *de;

		T_ASSERT(setenv("FAULTLINED_CRASH_AT", points[i], 1) == 0);
		fc_start(&fe);
		T_ASSERT(unsetenv("FAULTLINED_CRASH_AT") == 0);
		fc_vm_new(&vm, fc_layout2, FC_NELEM(fc_layout2), false);
		fc_vm_expect(&vm);
		fc_readers_start(&rd, &vm, 4);	/* the vCPUs fault before the daemon is there */
		t_sleep_ms(20);
		s = fc_handshake(&fe, &vm, FC_KEY_BYTES);
		for (;;) {
			pid_t w = waitpid(fe.d.pid, &ws, WNOHANG);
			T_ASSERT(w >= 0, "waitpid: %s", strerror(errno));
			if (w == fe.d.pid)
				break;
			T_ASSERT(t_now_ns() < end, "faultlined did not reach crash point %s in 10 s", points[i]);
			t_sleep_ms(5);
		}
		fe.d.pid = 0;
		T_ASSERT(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "%s: faultlined ended with status 0x%x, not SIGKILL",
			 points[i], ws);
		dd = opendir(fe.d.dir);
		T_ASSERT(dd);
		while ((de = readdir(dd)))
			T_ASSERT(!strstr(de->d_name, ".tmp"), "%s: %s left behind", points[i], de->d_name);
		closedir(dd);
		fc_start(&fe);
		fc_readers_join(&rd);
		fc_check_all(&vm);
		fc_assert_no_zero_page(&vm);
		st = fc_stats(&fe);
		T_ASSERT(fc_client(st, getpid()), "%s: the restarted daemon does not serve the VMM", points[i]);
		json_decref(st);
		t_log("crash point %s: the restarted daemon re-took the uffd, every page right", points[i]);
		close(s);
		fc_vm_free(&vm, true);
		d_stop(&fe.d, SIGTERM);
		/* This "VM" lives on (it is the test), so its record would be
		 * resumed by the next daemon: remove it, as a VM's exit does. */
		dd = opendir(fe.d.dir);
		T_ASSERT(dd);
		while ((de = readdir(dd))) {
			char path[400];
			if (strncmp(de->d_name, "firecracker-", 12))
				continue;
			snprintf(path, sizeof(path), "%s/%s", fe.d.dir, de->d_name);
			T_ASSERT(unlink(path) == 0);
		}
		closedir(dd);
	}
	d_env_free(&fe.d);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "daemon-restart", case_daemon_restart, NULL, 120 },
	{ "crash-after-handshake", case_crash_after_handshake, NULL, 120 },
	{ "handshake-serves", case_handshake_serves, NULL, 60 },
	{ "page-size-kib", case_page_size_kib, NULL, 60 },
	{ "balloon-remove", case_balloon_remove, NULL, 60 },
	{ "writes-private", case_writes_private, NULL, 60 },
	{ "firecracker-exits", case_firecracker_exits, NULL, 120 },
	{ "bad-handshakes", case_bad_handshakes, NULL, 300 },
	{ "split-message", case_split_message, NULL, 60 },
	{ "two-vmms", case_two_vmms, NULL, 60 },
	{ "hugetlb", case_hugetlb, NULL, 60, T_MISSING_HUGETLB | T_HUGE_PAGES },
	{ "hugetlb-page-size-kib", case_hugetlb_kib, NULL, 60, T_MISSING_HUGETLB | T_HUGE_PAGES },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, FC_NELEM(cases));
}
