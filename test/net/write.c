// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Writes through the page server (far memory): a server over a writable
 * file store (fl_server_new_store() + FL_SERVER_WRITABLE) and remote
 * stores with FL_REMOTE_WRITABLE. Written pages read back byte for byte
 * (through the writer, another client and the file itself), plain and
 * over TLS; flush; read-only servers refuse writes (-EROFS) at every
 * level; a server from before the write extension is a clear error
 * (-EOPNOTSUPP), not a hang; and hostile WRITE requests (out of bounds,
 * a length that is not whole pages, oversized, a bad checksum, a truncated
 * body, a write without asking) are refused, write nothing, and the
 * server keeps serving other clients.
 */
#include "net-util.h"
#include "fl-config.h"
#include "proto.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define NPAGES 1024		/* 4 MiB: writes of more than max_pages are split */
#define KEY_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

struct wsrv {
	struct fl_store *file;
	struct fl_server *srv;
	pthread_t tid;
	int fd, run_result;
	char path[64], addr[64];
	uint8_t *orig;		/* the file's bytes at the start */
};

static void *wsrv_main(void *arg)
{
	struct wsrv *w = arg;
	w->run_result = fl_server_run(w->srv);
	return NULL;
}

/* A server over a temporary file of NPAGES pattern pages (some zero). */
static void wsrv_start(struct wsrv *w, unsigned flags, const struct fl_server_opts *opts)
{
	struct fl_server_opts o = { .sz = sizeof(o), .listen = "127.0.0.1:0", .log = t_log_cb,
				    .log_level = u_log_level() };

	if (opts)
		o = *opts;
	o.flags = flags;
	memset(w, 0, sizeof(*w));
	w->orig = n_expect((size_t)NPAGES * U_PAGE, 0x3a3a);
	w->fd = u_tmpfile(w->orig, (size_t)NPAGES * U_PAGE, w->path, sizeof(w->path));
	T_OK(fl_store_file_new(w->fd, 0, 0, &w->file));
	T_OK(fl_server_new_store(w->file, &o, &w->srv));
	snprintf(w->addr, sizeof(w->addr), "127.0.0.1:%d", fl_server_port(w->srv));
	T_ASSERT(pthread_create(&w->tid, NULL, wsrv_main, w) == 0);
}

static void wsrv_stop(struct wsrv *w)
{
	T_OK(fl_server_stop(w->srv));
	pthread_join(w->tid, NULL);
	T_ASSERT_EQ(w->run_result, 0);
	fl_server_free(w->srv);
	fl_store_unref(w->file);
	close(w->fd);
	unlink(w->path);
	munmap(w->orig, (size_t)NPAGES * U_PAGE);
}

/* The file now, byte for byte, against `want`. */
static void file_is(const struct wsrv *w, const uint8_t *want)
{
	uint8_t *now = malloc((size_t)NPAGES * U_PAGE);
	T_ASSERT(now);
	T_ASSERT(pread(w->fd, now, (size_t)NPAGES * U_PAGE, 0) == (ssize_t)((size_t)NPAGES * U_PAGE));
	for (size_t p = 0; p < NPAGES; p++)
		T_ASSERT(memcmp(now + p * U_PAGE, want + p * U_PAGE, U_PAGE) == 0, "file page %zu differs", p);
	free(now);
}

static void read_all(struct fl_store *s, uint8_t *out, bool urgent)
{
	struct fl_store_iov iov = { .offset = 0, .buf = out, .len = (size_t)NPAGES * U_PAGE,
				    .flags_in = urgent ? FL_STORE_IN_URGENT : 0 };
	T_OK(fl_store_read(s, &iov, 1));
	if (iov.flags_out & FL_STORE_OUT_ZERO)
		memset(out, 0, iov.len);
}

/*
 * Random batches of writes (single pages, runs, one run of 600 pages that
 * spans two WRITE messages, a page of zeros), then flush; every reader
 * sees them.
 */
static void write_roundtrip(const struct fl_server_opts *so, const struct fl_remote_opts *ro_in)
{
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_store *s, *other;
	struct fl_server_stats st = { .sz = sizeof(st) };
	uint8_t *want, *got = malloc((size_t)NPAGES * U_PAGE), *data = malloc((size_t)NPAGES * U_PAGE);
	uint64_t seed = 12345;
	unsigned written = 0;

	T_ASSERT(got && data);
	wsrv_start(&w, FL_SERVER_WRITABLE, so);
	ro = *ro_in;
	ro.addr = w.addr;
	ro.flags = FL_REMOTE_WRITABLE;
	s = n_remote(&ro);
	T_ASSERT_EQ(fl_store_size(s), (uint64_t)NPAGES * U_PAGE);
	T_ASSERT_EQ(fl_store_ctl(s, FL_STORE_CTL_WRITABLE, NULL), 1);
	want = malloc((size_t)NPAGES * U_PAGE);
	T_ASSERT(want);
	memcpy(want, w.orig, (size_t)NPAGES * U_PAGE);
	/* Read everything once first: later reads must not come from anything kept. */
	read_all(s, got, false);
	T_ASSERT(memcmp(got, want, (size_t)NPAGES * U_PAGE) == 0);

	t_fill_pattern(data, (size_t)NPAGES * U_PAGE, 0, 0xbeef);
	for (int round = 0; round < 4; round++) {
		struct fl_store_iov iov[8];
		unsigned n = 0;
		for (int k = 0; k < 6; k++) {
			uint64_t p, len;
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			p = (seed >> 33) % (NPAGES - 8);
			len = 1 + (seed >> 20) % 8;
			iov[n++] = (struct fl_store_iov){ .offset = p * U_PAGE, .buf = data + p * U_PAGE,
							 .len = len * U_PAGE };
		}
		if (round == 1) {
			/* 600 pages: more than one WRITE (max 512 pages each). */
			iov[n++] = (struct fl_store_iov){ .offset = 100 * U_PAGE, .buf = data + 100 * U_PAGE,
							 .len = 600 * U_PAGE };
		}
		if (round == 2) {
			memset(data + 5 * U_PAGE, 0, U_PAGE);	/* a page of zeros is written too */
			iov[n++] = (struct fl_store_iov){ .offset = 5 * U_PAGE, .buf = data + 5 * U_PAGE, .len = U_PAGE };
		}
		T_OK(fl_store_write(s, iov, n));
		for (unsigned i = 0; i < n; i++) {
			T_ASSERT_EQ(iov[i].result, 0);
			memcpy(want + iov[i].offset, iov[i].buf, iov[i].len);
			written += (unsigned)(iov[i].len / U_PAGE);
		}
		/* Read back at once, both connections. */
		read_all(s, got, round % 2 == 0);
		T_ASSERT(memcmp(got, want, (size_t)NPAGES * U_PAGE) == 0, "round %d: read back differs", round);
	}
	T_OK(fl_store_flush(s));
	file_is(&w, want);
	/* Another client (read-only) sees the same. */
	ro.flags = 0;
	other = n_remote(&ro);
	T_ASSERT_EQ(fl_store_ctl(other, FL_STORE_CTL_WRITABLE, NULL), 0);
	read_all(other, got, true);
	T_ASSERT(memcmp(got, want, (size_t)NPAGES * U_PAGE) == 0);
	fl_store_unref(other);
	fl_store_unref(s);
	T_OK(fl_server_stats(w.srv, &st));
	T_ASSERT_EQ(st.pages_written, written);
	T_ASSERT_EQ(st.flushes, 1);
	wsrv_stop(&w);
	free(want);
	free(got);
	free(data);
}

static int c_roundtrip_plain(void *arg)
{
	struct fl_remote_opts ro = n_ropts("", 0);
	(void)arg;
	write_roundtrip(NULL, &ro);
	/* One connection for everything: writes and reads share it. */
	ro.connections = 1;
	write_roundtrip(NULL, &ro);
	return T_PASS;
}

static int c_roundtrip_tls(void *arg)
{
	struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0", .tls = FL_TLS_PSK,
				     .psk_identity = "far", .psk_key_hex = KEY_A, .log = t_log_cb,
				     .log_level = u_log_level() };
	struct fl_remote_opts ro = n_ropts("", 0);
	(void)arg;
	if (!FL_HAVE_TLS)
		t_skip("built without TLS");
	ro.tls = FL_TLS_PSK;
	ro.psk_identity = "far";
	ro.psk_key_hex = KEY_A;
	write_roundtrip(&so, &ro);
	return T_PASS;
}

static int c_readonly(void *arg)
{
	char path[128];
	struct n_server ns;
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0", .flags = FL_SERVER_WRITABLE };
	struct fl_server *srv = (struct fl_server *)(uintptr_t)1;
	struct fl_store *s, *rofile;
	struct fl_image *img;
	uint8_t page[U_PAGE];
	struct fl_store_iov iov = { .offset = U_PAGE, .buf = page, .len = U_PAGE };
	int rofd;
	(void)arg;

	memset(page, 0x5a, sizeof(page));
	close(u_tmpfile(NULL, 0, path, sizeof(path)));
	n_write_image(path, 1, 64 * U_PAGE, 7, SIZE_MAX);
	/* An image server never takes writes. */
	T_OK(fl_image_open(path, 0, &img));
	T_ASSERT_EQ(fl_server_new(img, &so, &srv), -EROFS);
	T_ASSERT(srv == (struct fl_server *)(uintptr_t)1);
	fl_image_close(img);
	/* Nor a server over a store that cannot write. */
	rofd = open(path, O_RDONLY | O_CLOEXEC);
	T_ASSERT(rofd >= 0);
	T_OK(fl_store_file_new(rofd, 0, 64 * U_PAGE, &rofile));
	T_ASSERT_EQ(fl_server_new_store(rofile, &so, &srv), -EROFS);
	so.flags = 1u << 7;
	T_ASSERT_EQ(fl_server_new_store(rofile, &so, &srv), -EINVAL);
	fl_store_unref(rofile);
	close(rofd);

	n_server_start(&ns, path, NULL);
	ro = n_ropts(ns.addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	T_ASSERT_EQ(fl_store_remote_new(&ro, &s), -EROFS);
	ro.flags = 1u << 5;
	T_ASSERT_EQ(fl_store_remote_new(&ro, &s), -EINVAL);
	ro.flags = 0;
	s = n_remote(&ro);
	T_ASSERT_EQ(fl_store_ctl(s, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_ASSERT_EQ(fl_store_write(s, &iov, 1), -EROFS);
	T_ASSERT_EQ(iov.result, -EROFS);
	T_ASSERT_EQ(fl_store_flush(s), -EROFS);
	fl_store_unref(s);
	n_server_stop(&ns);
	unlink(path);

	/* A store server started without FL_SERVER_WRITABLE. */
	wsrv_start(&w, 0, NULL);
	ro = n_ropts(w.addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	T_ASSERT_EQ(fl_store_remote_new(&ro, &s), -EROFS);
	ro.flags = 0;
	s = n_remote(&ro);
	T_ASSERT_EQ(fl_store_write(s, &iov, 1), -EROFS);
	fl_store_unref(s);
	file_is(&w, w.orig);
	wsrv_stop(&w);
	return T_PASS;
}

/* ---- a server from before the write extension ---------------------------------- */

struct oldsrv {
	int lfd, port;
	pthread_t tid;
};

/* Answers a HELLO with a nonzero reserved field the way 0.1 servers did. */
static void *oldsrv_main(void *arg)
{
	struct oldsrv *o = arg;
	int fd = accept(o->lfd, NULL, NULL);
	uint8_t hello[FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE], err[FL_PROTO_HDR_SIZE + FL_PROTO_ERROR_SIZE];
	size_t got = 0;

	if (fd < 0)
		return NULL;
	while (got < sizeof(hello)) {
		ssize_t n = read(fd, hello + got, sizeof(hello) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	/* bytes 12..15 of the payload were reserved, must be 0 */
	if (got == sizeof(hello) && (hello[FL_PROTO_HDR_SIZE + 12] | hello[FL_PROTO_HDR_SIZE + 13]))
		fl__proto_error_encode(err, sizeof(err), 0, EPROTO);
	else
		fl__proto_error_encode(err, sizeof(err), 0, EBUSY);
	if (write(fd, err, sizeof(err)) < 0)
		(void)0;
	close(fd);
	return NULL;
}

static int c_old_server(void *arg)
{
	struct oldsrv o;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct fl_remote_opts ro;
	struct fl_store *s;
	char addr[64];
	uint64_t t0;
	(void)arg;

	o.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_ASSERT(o.lfd >= 0 && bind(o.lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(o.lfd, 4) == 0);
	T_ASSERT(getsockname(o.lfd, (struct sockaddr *)&a, &al) == 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(a.sin_port));
	T_ASSERT(pthread_create(&o.tid, NULL, oldsrv_main, &o) == 0);
	ro = n_ropts(addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	t0 = t_now_ns();
	T_ASSERT_EQ(fl_store_remote_new(&ro, &s), -EOPNOTSUPP);
	/* Answered, not timed out. */
	T_ASSERT(t_now_ns() - t0 < 2000000000ull * t_scaled_ms(1000) / 1000);
	pthread_join(o.tid, NULL);
	close(o.lfd);
	return T_PASS;
}

/* ---- hostile WRITE requests -------------------------------------------------------- */

static int raw_connect(const struct wsrv *w, bool ask_write)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct fl__proto_hello h = { .session = (uint64_t)t_now_ns(), .role = FL_ROLE_BULK,
				     .features = ask_write ? FL_PROTO_FEAT_WRITE : 0 };
	uint8_t buf[FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE], ack[FL_PROTO_HDR_SIZE + 64];
	struct fl__proto_hdr hdr;
	struct fl__proto_ack pa;
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	T_ASSERT(fd >= 0);
	a.sin_port = htons((uint16_t)atoi(strchr(w->addr, ':') + 1));
	T_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	fl__proto_hello_encode(buf, sizeof(buf), &h);
	T_ASSERT(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	T_ASSERT(recv(fd, ack, FL_PROTO_HDR_SIZE + 48, MSG_WAITALL) == FL_PROTO_HDR_SIZE + 48);
	T_OK(fl__proto_hdr_decode(ack, FL_PROTO_HDR_SIZE, &hdr));
	T_OK(fl__proto_ack_decode(&hdr, ack + FL_PROTO_HDR_SIZE, hdr.length, &pa));
	T_ASSERT_EQ(pa.features, ask_write ? FL_PROTO_FEAT_WRITE : 0u);
	return fd;
}

/* The next message: its type and, for ERROR, the errno; DONE gives 0. -1 when the server closed. */
static int raw_answer(int fd, uint32_t *ret_id)
{
	uint8_t hb[FL_PROTO_HDR_SIZE], p[64];
	struct fl__proto_hdr h;
	int e;

	if (recv(fd, hb, sizeof(hb), MSG_WAITALL) != (ssize_t)sizeof(hb))
		return -1;
	T_OK(fl__proto_hdr_decode(hb, sizeof(hb), &h));
	T_ASSERT(h.length <= sizeof(p));
	T_ASSERT(recv(fd, p, h.length, MSG_WAITALL) == (ssize_t)h.length);
	*ret_id = h.id;
	if (h.type == FL_MSG_DONE)
		return 0;
	T_ASSERT_EQ(h.type, FL_MSG_ERROR);
	T_OK(fl__proto_error_decode(&h, p, h.length, &e));
	return e;
}

/* A WRITE of npages at first, from `pages`; corrupt: the first checksum off by one. */
static void raw_write(int fd, uint32_t id, uint32_t region, uint64_t first, uint32_t npages, const uint8_t *pages,
		      bool corrupt, size_t cut)
{
	struct fl__proto_read m = { .region = region, .npages = npages, .first = first };
	size_t len = FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_LEN(npages), at;
	uint8_t *b = malloc(len);
	uint64_t *cs = malloc(npages * sizeof(*cs));

	T_ASSERT(b && cs);
	at = (size_t)fl__proto_write_encode(b, len, id, &m);
	memcpy(b + at, pages, (size_t)npages * U_PAGE);
	for (uint32_t i = 0; i < npages; i++)
		cs[i] = fl__proto_page_csum(pages + (size_t)i * U_PAGE);
	if (corrupt)
		cs[0]++;
	at += (size_t)npages * U_PAGE;
	fl__proto_trailer_encode(b + at, len - at, cs, npages, 0);
	if (cut)
		len = cut;
	T_ASSERT(write(fd, b, len) == (ssize_t)len);
	free(b);
	free(cs);
}

static int c_hostile(void *arg)
{
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_store *reader;
	uint8_t *pages = malloc(4 * U_PAGE), *got = malloc((size_t)NPAGES * U_PAGE), hb[FL_PROTO_HDR_SIZE + 64];
	struct fl_server_stats st = { .sz = sizeof(st) };
	uint32_t id;
	int fd;
	(void)arg;

	T_ASSERT(pages && got);
	memset(pages, 0xee, 4 * U_PAGE);
	wsrv_start(&w, FL_SERVER_WRITABLE, NULL);
	ro = n_ropts(w.addr, 0);
	reader = n_remote(&ro);

	/* Requests refused one by one, the connection kept. */
	fd = raw_connect(&w, true);
	raw_write(fd, 11, 0, NPAGES - 1, 2, pages, false, 0);		/* one page past the end */
	T_ASSERT_EQ(raw_answer(fd, &id), ERANGE);
	T_ASSERT_EQ(id, 11u);
	raw_write(fd, 12, 0, 1ull << 40, 1, pages, false, 0);		/* far out */
	T_ASSERT_EQ(raw_answer(fd, &id), ERANGE);
	raw_write(fd, 13, 3, 0, 1, pages, false, 0);			/* no such region */
	T_ASSERT_EQ(raw_answer(fd, &id), ERANGE);
	raw_write(fd, 14, 0, 10, 4, pages, true, 0);			/* a checksum off */
	T_ASSERT_EQ(raw_answer(fd, &id), EBADMSG);
	T_ASSERT_EQ(id, 14u);
	/* Still serving this connection: a good write is taken. */
	raw_write(fd, 15, 0, 20, 1, pages, false, 0);
	T_ASSERT_EQ(raw_answer(fd, &id), 0);
	T_ASSERT_EQ(id, 15u);
	/* A length that is not npages whole pages ("unaligned"): malformed, closed. */
	fl__proto_hdr_encode(hb, sizeof(hb), FL_MSG_WRITE, (uint32_t)FL_PROTO_WRITE_LEN(1), 16, 0);
	memset(hb + FL_PROTO_HDR_SIZE, 0, 16);
	hb[FL_PROTO_HDR_SIZE + 4] = 2;	/* npages 2 in a one-page body */
	T_ASSERT(write(fd, hb, FL_PROTO_HDR_SIZE + 16) == FL_PROTO_HDR_SIZE + 16);
	{
		uint8_t *rest = calloc(1, FL_PROTO_WRITE_LEN(1));
		T_ASSERT(rest && write(fd, rest, FL_PROTO_WRITE_LEN(1) - 16) == (ssize_t)(FL_PROTO_WRITE_LEN(1) - 16));
		free(rest);
	}
	T_ASSERT_EQ(raw_answer(fd, &id), EPROTO);
	T_ASSERT_EQ(id, 0u);
	T_ASSERT_EQ(raw_answer(fd, &id), -1);
	close(fd);

	/* Oversized: 513 pages' worth of length, refused from the header. */
	fd = raw_connect(&w, true);
	fl__proto_hdr_encode(hb, sizeof(hb), FL_MSG_WRITE, (uint32_t)FL_PROTO_WRITE_LEN(1), 17, 0);
	hb[8] = 0; hb[9] = 0; hb[10] = 0x40; hb[11] = 0;	/* length = 4 MiB */
	T_ASSERT(write(fd, hb, FL_PROTO_HDR_SIZE) == FL_PROTO_HDR_SIZE);
	T_ASSERT_EQ(raw_answer(fd, &id), EPROTO);
	close(fd);

	/* Truncated: half the body, then the client goes away. */
	fd = raw_connect(&w, true);
	raw_write(fd, 18, 0, 30, 4, pages, false, FL_PROTO_HDR_SIZE + 2 * U_PAGE);
	shutdown(fd, SHUT_WR);
	T_ASSERT_EQ(raw_answer(fd, &id), -1);
	close(fd);

	/* A write without asking for writes in the HELLO. */
	fd = raw_connect(&w, false);
	raw_write(fd, 19, 0, 40, 1, pages, false, 0);
	T_ASSERT_EQ(raw_answer(fd, &id), EROFS);
	raw_write(fd, 20, 0, 40, 1, pages, false, 0);
	T_ASSERT_EQ(raw_answer(fd, &id), EROFS);
	close(fd);

	/* Only the one good write landed; the other client still reads. */
	memcpy(w.orig + 20 * U_PAGE, pages, U_PAGE);
	file_is(&w, w.orig);
	read_all(reader, got, true);
	T_ASSERT(memcmp(got, w.orig, (size_t)NPAGES * U_PAGE) == 0);
	T_OK(fl_server_stats(w.srv, &st));
	T_ASSERT_EQ(st.pages_written, 1);
	T_ASSERT(st.errors >= 6);
	fl_store_unref(reader);
	wsrv_stop(&w);
	free(pages);
	free(got);
	return T_PASS;
}

/*
 * faultline serve --writable FILE: a client writes and flushes, the
 * server is stopped with SIGTERM, and FILE holds the writes.
 */
static int c_cli_serve_writable(void *arg)
{
	const char *cli = getenv("FAULTLINE_CLI");
	char path[128], line[128], addr[64];
	uint8_t *want = n_expect(64 * U_PAGE, 0x99), page[U_PAGE], *now = malloc(64 * U_PAGE);
	char *argv[] = { (char *)cli, (char *)"serve", (char *)"--writable", path, (char *)"--listen",
			 (char *)"127.0.0.1:0", NULL };
	posix_spawn_file_actions_t fa;
	struct fl_remote_opts ro;
	struct fl_store *s;
	struct fl_store_iov iov[2];
	int pfd[2], fd, st;
	ssize_t got = 0, n;
	pid_t pid;
	(void)arg;

	if (!cli)
		t_skip("FAULTLINE_CLI not set (run through meson)");
	T_ASSERT(now);
	fd = u_tmpfile(want, 64 * U_PAGE, path, sizeof(path));
	T_ASSERT(pipe(pfd) == 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	T_ASSERT(posix_spawn(&pid, cli, &fa, NULL, argv, environ) == 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	while (got < (ssize_t)sizeof(line) - 1 && (n = read(pfd[0], line + got, 1)) == 1 && line[got] != '\n')
		got++;
	line[got] = '\0';
	close(pfd[0]);
	T_ASSERT(sscanf(line, "listening on %63s", addr) == 1, "serve said \"%s\"", line);
	ro = n_ropts(addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	s = n_remote(&ro);
	T_ASSERT_EQ(fl_store_size(s), 64 * U_PAGE);
	memset(page, 0x42, sizeof(page));
	iov[0] = (struct fl_store_iov){ .offset = 3 * U_PAGE, .buf = page, .len = U_PAGE };
	iov[1] = (struct fl_store_iov){ .offset = 63 * U_PAGE, .buf = page, .len = U_PAGE };
	T_OK(fl_store_write(s, iov, 2));
	T_OK(fl_store_flush(s));
	fl_store_unref(s);
	kill(pid, SIGTERM);
	T_ASSERT(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	memcpy(want + 3 * U_PAGE, page, U_PAGE);
	memcpy(want + 63 * U_PAGE, page, U_PAGE);
	T_ASSERT(pread(fd, now, 64 * U_PAGE, 0) == (ssize_t)(64 * U_PAGE));
	T_ASSERT(memcmp(now, want, 64 * U_PAGE) == 0);
	close(fd);
	unlink(path);
	free(now);
	munmap(want, 64 * U_PAGE);
	return T_PASS;
}

/*
 * Threads writing and reading at once through one remote store (writes
 * and bulk reads share the bulk connection, urgent reads their own):
 * each thread owns a slice of pages, writes a new version of a random run,
 * and reads its whole slice back, alternately urgent and not. A write
 * pipelined among other threads' reads, or a read-ahead from before a
 * write, would show up as an old or foreign version.
 */
#define MT_THREADS 4
#define MT_SLICE (NPAGES / MT_THREADS)

struct mt {
	struct fl_store *s;
	unsigned idx;
	_Atomic int *failed;
	char why[160];
};

static void *mt_main(void *arg)
{
	struct mt *m = arg;
	uint8_t *mine = calloc(MT_SLICE, U_PAGE), *got = malloc((size_t)MT_SLICE * U_PAGE);
	uint64_t first = (uint64_t)m->idx * MT_SLICE, x = m->idx + 1;

	if (!mine || !got) {
		snprintf(m->why, sizeof(m->why), "out of memory");
		atomic_store(m->failed, 1);
	}
	/* Start from what the server holds now. */
	if (mine && got) {
		struct fl_store_iov rd = { .offset = first * U_PAGE, .buf = mine, .len = (size_t)MT_SLICE * U_PAGE };
		if (fl_store_read(m->s, &rd, 1)) {
			snprintf(m->why, sizeof(m->why), "first read failed");
			atomic_store(m->failed, 1);
		} else if (rd.flags_out & FL_STORE_OUT_ZERO) {
			memset(mine, 0, rd.len);
		}
	}
	for (unsigned round = 0; round < 40 && !atomic_load(m->failed); round++) {
		struct fl_store_iov w, rd;
		uint64_t p, len;
		int r;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p = (x >> 33) % (MT_SLICE - 40);
		len = 1 + (x >> 20) % 40;
		t_fill_pattern(mine + p * U_PAGE, len * U_PAGE, p, (uint32_t)(x >> 7));
		w = (struct fl_store_iov){ .offset = (first + p) * U_PAGE, .buf = mine + p * U_PAGE, .len = len * U_PAGE };
		r = fl_store_write(m->s, &w, 1);
		if (r) {
			snprintf(m->why, sizeof(m->why), "thread %u round %u: write: %d", m->idx, round, r);
			atomic_store(m->failed, 1);
			break;
		}
		/* In two halves: sequential runs get read ahead on the bulk connection. */
		for (unsigned half = 0; half < 2; half++) {
			rd = (struct fl_store_iov){ .offset = (first + half * MT_SLICE / 2) * U_PAGE,
						    .buf = got + (size_t)half * MT_SLICE / 2 * U_PAGE,
						    .len = (size_t)MT_SLICE / 2 * U_PAGE,
						    .flags_in = round % 2 ? FL_STORE_IN_URGENT : 0 };
			r = fl_store_read(m->s, &rd, 1);
			if (!r && (rd.flags_out & FL_STORE_OUT_ZERO))
				memset(rd.buf, 0, rd.len);
			if (r) {
				snprintf(m->why, sizeof(m->why), "thread %u round %u: read: %d", m->idx, round, r);
				atomic_store(m->failed, 1);
			}
		}
		if (!atomic_load(m->failed) && memcmp(got, mine, (size_t)MT_SLICE * U_PAGE)) {
			snprintf(m->why, sizeof(m->why), "thread %u round %u: read back differs", m->idx, round);
			atomic_store(m->failed, 1);
		}
	}
	free(mine);
	free(got);
	return NULL;
}

static int c_threads(void *arg)
{
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_store *s;
	struct mt m[MT_THREADS];
	pthread_t tid[MT_THREADS];
	_Atomic int failed = 0;
	(void)arg;

	wsrv_start(&w, FL_SERVER_WRITABLE, NULL);
	ro = n_ropts(w.addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	s = n_remote(&ro);
	for (unsigned i = 0; i < MT_THREADS; i++) {
		m[i] = (struct mt){ .s = s, .idx = i, .failed = &failed };
		T_ASSERT(pthread_create(&tid[i], NULL, mt_main, &m[i]) == 0);
	}
	for (unsigned i = 0; i < MT_THREADS; i++)
		pthread_join(tid[i], NULL);
	for (unsigned i = 0; i < MT_THREADS; i++)
		T_ASSERT(!m[i].why[0], "%s", m[i].why);
	T_ASSERT(!failed);
	T_OK(fl_store_flush(s));
	n_log_rstats("threads", s);
	fl_store_unref(s);
	wsrv_stop(&w);
	return T_PASS;
}

/*
 * The server goes away: writes and flush fail within the timeout, every
 * request with its own error, none reported written.
 */
static int c_server_gone(void *arg)
{
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_store *s;
	struct fl_store_iov iov[3];
	uint8_t page[U_PAGE];
	uint64_t t0;
	(void)arg;

	memset(page, 0x66, sizeof(page));
	wsrv_start(&w, FL_SERVER_WRITABLE, NULL);
	ro = n_ropts(w.addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	ro.timeout_ms = t_scaled_ms(1000);
	s = n_remote(&ro);
	for (int i = 0; i < 3; i++)
		iov[i] = (struct fl_store_iov){ .offset = (uint64_t)(10 + 2 * i) * U_PAGE, .buf = page, .len = U_PAGE };
	T_OK(fl_store_write(s, iov, 3));
	T_OK(fl_server_stop(w.srv));
	pthread_join(w.tid, NULL);
	t0 = t_now_ns();
	T_ASSERT(fl_store_write(s, iov, 3) < 0);
	for (int i = 0; i < 3; i++)
		T_ASSERT(iov[i].result < 0, "request %d: %d", i, iov[i].result);
	T_ASSERT(fl_store_flush(s) < 0);
	/* Bounded: the timeout (twice, write then flush), not a hang. */
	T_ASSERT(t_now_ns() - t0 < 4 * (uint64_t)ro.timeout_ms * 1000000ull + 2000000000ull, "took %llu ms",
		 (unsigned long long)((t_now_ns() - t0) / 1000000));
	fl_store_unref(s);
	fl_server_free(w.srv);
	fl_store_unref(w.file);
	close(w.fd);
	unlink(w.path);
	munmap(w.orig, (size_t)NPAGES * U_PAGE);
	return T_PASS;
}

/*
 * Connections dropped under a writer (FL_REMOTE_CTL_DROP): writes cut
 * off are sent again after the reconnect, and everything acknowledged is
 * there, byte for byte.
 */
struct dropper {
	struct fl_store *s;
	_Atomic bool stop;
	unsigned drops;
};

static void *dropper_main(void *arg)
{
	struct dropper *d = arg;
	while (!atomic_load(&d->stop)) {
		t_sleep_ms(3);
		fl_store_ctl(d->s, FL_REMOTE_CTL_DROP, NULL);
		d->drops++;
	}
	return NULL;
}

static int c_drops(void *arg)
{
	struct wsrv w;
	struct fl_remote_opts ro;
	struct fl_store *s;
	struct dropper d;
	pthread_t tid;
	uint8_t *want, *got = malloc((size_t)NPAGES * U_PAGE);
	uint64_t x = 3;
	(void)arg;

	T_ASSERT(got);
	wsrv_start(&w, FL_SERVER_WRITABLE, NULL);
	want = malloc((size_t)NPAGES * U_PAGE);
	T_ASSERT(want);
	memcpy(want, w.orig, (size_t)NPAGES * U_PAGE);
	ro = n_ropts(w.addr, 0);
	ro.flags = FL_REMOTE_WRITABLE;
	s = n_remote(&ro);
	d = (struct dropper){ .s = s };
	T_ASSERT(pthread_create(&tid, NULL, dropper_main, &d) == 0);
	for (unsigned round = 0; round < 60; round++) {
		struct fl_store_iov iov;
		uint64_t p, len;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p = (x >> 33) % (NPAGES - 64);
		len = 1 + (x >> 20) % 64;
		t_fill_pattern(want + p * U_PAGE, len * U_PAGE, p, (uint32_t)(x >> 5));
		iov = (struct fl_store_iov){ .offset = p * U_PAGE, .buf = want + p * U_PAGE, .len = len * U_PAGE };
		T_OK(fl_store_write(s, &iov, 1));
	}
	T_OK(fl_store_flush(s));
	atomic_store(&d.stop, true);
	pthread_join(tid, NULL);
	t_log("%u drops", d.drops);
	n_log_rstats("drops", s);
	T_ASSERT(n_rstats(s).reconnects > 0, "no reconnect happened");
	read_all(s, got, true);
	T_ASSERT(memcmp(got, want, (size_t)NPAGES * U_PAGE) == 0);
	file_is(&w, want);
	fl_store_unref(s);
	wsrv_stop(&w);
	free(want);
	free(got);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "connection-drops-during-writes", c_drops, NULL, 60 },
	{ "server-gone", c_server_gone, NULL, 30 },
	{ "threads-write-read", c_threads, NULL, 60 },
	{ "cli-serve-writable", c_cli_serve_writable, NULL, 30 },
	{ "write-read-plain", c_roundtrip_plain, NULL, 60 },
	{ "write-read-tls", c_roundtrip_tls, NULL, 60 },
	{ "readonly-refusals", c_readonly, NULL, 60 },
	{ "old-server-clear-error", c_old_server, NULL, 30 },
	{ "hostile-writes", c_hostile, NULL, 60 },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
