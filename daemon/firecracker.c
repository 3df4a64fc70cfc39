// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Firecracker's page-fault handshake on snapshot resume: the VMM connects
 * to a unix stream socket and sends, in one message, a JSON array of guest
 * memory mappings, each {"base_host_virt_addr", "size", "offset",
 * "page_size"} ("page_size_kib" in older releases), with its userfaultfd
 * as SCM_RIGHTS. Nothing else is said: Firecracker's pid comes from
 * SO_PEERCRED, the bytes from the guest memory file named on our command
 * line (--mem-file), each mapping from `offset` in it. Balloon inflation
 * reaches us as REMOVE events: those pages read zeros afterwards.
 */
#include "faultlined.h"
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FC_MAX_MSG (64u << 10)
#define FC_MAX_MAPPINGS 64

struct fc_mapping {
	uint64_t base, size, offset, page_size;
};

/* One message: the bytes until the JSON is complete (it is sent at once,
 * but a stream may split it), and the fd of the first part. */
static int fc_recv(int sock, char *buf, size_t cap, size_t *ret_len, int *ret_fd)
{
	size_t len = 0;
	uint64_t deadline = fl__now_ns() + 2000000000ull;
	int fd = -1;

	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} u;
		struct iovec iov = { buf + len, cap - len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				      .msg_controllen = sizeof(u.b) };
		struct pollfd p = { .fd = sock, .events = POLLIN };
		json_error_t err;
		json_t *j;
		ssize_t n;

		if (len == cap)
			break;
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN) {
			uint64_t now = fl__now_ns();
			if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000) + 1) <= 0)
				break;
			continue;
		}
		if (n <= 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			int fds[4];
			size_t nfds;
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = FL_MIN((c->cmsg_len - CMSG_LEN(0)) / sizeof(int), 4);
			memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
			for (size_t i = 0; i < nfds; i++) {
				if (fd < 0)
					fd = fds[i];
				else
					fl__close(fds[i]);
			}
		}
		len += (size_t)n;
		/* The handshake is an array: what starts otherwise will not
		 * become one by waiting, and the loop waits with us. */
		for (size_t i = 0; i < len; i++) {
			if (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')
				continue;
			if (buf[i] != '[')
				goto out;
			break;
		}
		j = json_loadb(buf, len, 0, &err);
		if (j) {
			json_decref(j);
			*ret_len = len;
			*ret_fd = fd;
			return 0;
		}
	}
out:
	fl__close(fd);
	return len == cap ? -EMSGSIZE : -EBADMSG;
}

static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EBADMSG;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_mappings(const char *buf, size_t len, struct fc_mapping *m, size_t *ret_n, char *why, size_t whylen)
{
	json_error_t err;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err), *o;
	size_t i;
	int r = 0;

	if (!root) {
		snprintf(why, whylen, "JSON: %.100s", err.text);
		return -EBADMSG;
	}
	if (!json_is_array(root) || !json_array_size(root) || json_array_size(root) > FC_MAX_MAPPINGS) {
		snprintf(why, whylen, "not an array of 1..%d mappings", FC_MAX_MAPPINGS);
		json_decref(root);
		return -EBADMSG;
	}
	json_array_foreach(root, i, o) {
		uint64_t kib;
		if (!json_is_object(o) || get_u64(o, "base_host_virt_addr", &m[i].base) ||
		    get_u64(o, "size", &m[i].size) || get_u64(o, "offset", &m[i].offset)) {
			snprintf(why, whylen, "mapping %zu: base_host_virt_addr, size and offset are required", i);
			r = -EBADMSG;
			break;
		}
		if (get_u64(o, "page_size", &m[i].page_size)) {
			if (get_u64(o, "page_size_kib", &kib) || kib > (1u << 20)) {
				snprintf(why, whylen, "mapping %zu: no page_size", i);
				r = -EBADMSG;
				break;
			}
			m[i].page_size = kib * 1024;
		}
	}
	*ret_n = json_array_size(root);
	json_decref(root);
	return r;
}

static int check_mapping(struct fld *d, const struct fc_mapping *m, char *why, size_t whylen)
{
	uint64_t file = fl_store_size(d->mem_store);

	if (m->page_size != 4096 && m->page_size != (2u << 20)) {
		snprintf(why, whylen, "page size %llu (4 KiB or 2 MiB)", (unsigned long long)m->page_size);
		return -EINVAL;
	}
	if (!m->size || m->base % m->page_size || m->size % m->page_size || m->offset % m->page_size ||
	    m->base + m->size < m->base) {
		snprintf(why, whylen, "mapping 0x%llx+%llu not aligned to its pages", (unsigned long long)m->base,
			 (unsigned long long)m->size);
		return -EINVAL;
	}
	if (m->offset > file || m->size > file - m->offset) {
		snprintf(why, whylen, "mapping at offset %llu+%llu is beyond the memory file (%llu bytes)",
			 (unsigned long long)m->offset, (unsigned long long)m->size, (unsigned long long)file);
		return -ERANGE;
	}
	return 0;
}

int fld_firecracker_accept(struct fld *d, struct fld_session *s)
{
	struct fc_mapping maps[FC_MAX_MAPPINGS];
	char *buf = malloc(FC_MAX_MSG), why[160] = "";
	size_t len = 0, n = 0;
	uint64_t features, bytes = 0;
	int fd = -1, r;

	if (!buf)
		return -ENOMEM;
	r = fc_recv(s->sock, buf, FC_MAX_MSG, &len, &fd);
	if (r)
		snprintf(why, sizeof(why), "%s", r == -EMSGSIZE ? "message too long" : "no complete JSON message");
	if (!r && fd < 0) {
		snprintf(why, sizeof(why), "no userfaultfd with the mappings");
		r = -EBADMSG;
	}
	if (!r)
		r = parse_mappings(buf, len, maps, &n, why, sizeof(why));
	free(buf);
	for (size_t i = 0; !r && i < n; i++) {
		r = check_mapping(d, &maps[i], why, sizeof(why));
		bytes += maps[i].size;
	}
	if (!r && (r = fld_uffd_features(fd, &features)))
		snprintf(why, sizeof(why), "the fd is not a userfaultfd");
	if (!r) {
		r = fl_engine_adopt(d->engine, fd, s->pid, features);
		if (r >= 0) {
			s->space = r;
			fd = -1;
			r = 0;
			fld_space_set(d, s->space, s->id, 0);
		} else {
			snprintf(why, sizeof(why), "adopt: %s", strerror(-r));
		}
	}
	for (size_t i = 0; !r && i < n; i++) {
		struct fl_region_opts o = {
			.sz = sizeof(o), .length = maps[i].size, .mode = FL_MODE_MISSING,
			.mem = maps[i].page_size == 4096 ? FL_MEM_ANON : FL_MEM_HUGETLB,
			.flags = FL_REGION_FOREIGN, .addr = (void *)(uintptr_t)maps[i].base, .space = s->space,
			.store = d->mem_store, .store_offset = maps[i].offset, .memfd = -1,
			.prefetch_max = d->cfg.max_inflight, .name = "guest-memory",
		};
		struct fl_region *reg;
		r = fl_region_new(d->engine, &o, &reg);
		if (r)
			snprintf(why, sizeof(why), "mapping %zu: %s", i, strerror(-r));
		else
			s->nregions++;
	}
	fl__close(fd);
	if (r) {
		fld_log(0, "client %llu (Firecracker pid %d): handshake refused: %s", (unsigned long long)s->id,
			s->pid, why);
		d->bad_messages++;
		return r;
	}
	s->nranges = (unsigned)n;
	s->bytes = bytes;
	fl_engine_wake_all(d->engine, s->space);
	fld_log(0, "client %llu (Firecracker pid %d): serving %zu guest memory mappings, %llu MiB from %s",
		(unsigned long long)s->id, s->pid, n, (unsigned long long)(bytes >> 20), d->cfg.mem_file);
	return 0;
}
