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
#include "flutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FC_MAX_MSG (64u << 10)

/*
 * Read what has arrived of the handshake into the session's buffer, without
 * waiting: the control loop calls again when more comes (a stream may split
 * the message), and the timer ends a handshake that stalls. Returns 1 when
 * the JSON is complete, 0 for more, -errno to refuse.
 */
static int fc_read_some(struct fld_session *s)
{
	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} u;
		struct iovec iov;
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				      .msg_controllen = sizeof(u.b) };
		json_error_t err;
		json_t *j;
		ssize_t n;

		if (!s->fc_buf && !(s->fc_buf = malloc(FC_MAX_MSG)))
			return -ENOMEM;
		if (s->fc_len == FC_MAX_MSG)
			return -EMSGSIZE;
		iov = (struct iovec){ s->fc_buf + s->fc_len, FC_MAX_MSG - s->fc_len };
		n = recvmsg(s->sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0)
			return -EBADMSG;	/* gone before the message was whole */
		{
			int fd = fl__cmsg_take_fd(&msg);
			if (s->fc_fd < 0)
				s->fc_fd = fd;
			else
				fl__close(fd);	/* only the first part's fd counts */
		}
		s->fc_len += (size_t)n;
		/* The handshake is an array: what starts otherwise will not
		 * become one by waiting. */
		for (size_t i = 0; i < s->fc_len; i++) {
			char ch = s->fc_buf[i];
			if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
				continue;
			if (ch != '[')
				return -EBADMSG;
			break;
		}
		j = json_loadb(s->fc_buf, s->fc_len, 0, &err);
		if (j) {
			json_decref(j);
			return 1;
		}
	}
}

static void state_write(struct fld *d, struct fld_session *s, const char *json, size_t len);

/*
 * Serve a handshake: the mappings in `json`, the uffd `fd` (taken, closed
 * on error). On failure *why says what was wrong.
 *
 * `record`: write the state record first (a new handshake; a resumed VM has
 * one). It is written once everything is checked and before the uffd is
 * adopted, so a daemon killed at any later moment leaves a record behind
 * and the next one re-takes the uffd: Firecracker never hands it over
 * again. A daemon killed before that point has taken nothing (the VM's
 * faults wait, with no record to find: the window faultlined(8) states).
 */
static int fc_serve(struct fld *d, struct fld_session *s, const char *json, size_t len, int fd, bool record,
		    char *why, size_t whylen)
{
	struct fld_fc_mapping maps[FLD_FC_MAX_MAPPINGS];
	uint64_t features, bytes = 0;
	size_t n = 0;
	int r;

	/* Everything is checked before the uffd is adopted: a refused VM is
	 * left as it was (nothing registered with us to poison). */
	r = fld_fc_mappings(json, len, fl_store_size(d->mem_store), maps, &n, why, whylen);
	for (size_t i = 0; !r && i < n; i++)
		bytes += maps[i].size;
	if (!r && (r = fld_uffd_features(fd, &features)))
		snprintf(why, whylen, "the fd is not a userfaultfd");
	if (!r && record) {
		state_write(d, s, json, len);
		fld_crash_point("fc-recorded");
	}
	if (!r) {
		r = fl_engine_adopt(d->engine, fd, s->pid, features);
		if (r >= 0) {
			s->space = r;
			fd = -1;
			r = 0;
			fld_space_set(d, s->space, s->id, 0);
		} else {
			snprintf(why, whylen, "adopt: %s", strerror(-r));
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
			snprintf(why, whylen, "mapping %zu: %s", i, strerror(-r));
		else
			s->nregions++;
	}
	fl__close(fd);
	if (r) {
		if (record)
			fld_firecracker_forget(s);	/* nothing for a restarted daemon to resume */
		return r;
	}
	s->nranges = (unsigned)n;
	s->bytes = bytes;
	if (record)
		fld_crash_point("fc-adopted");	/* a new handshake only, not a resumption */
	/* Faults that waited (on a daemon that died, or before we came) come again. */
	fl_engine_wake_all(d->engine, s->space);
	return 0;
}

/* ---- the state record: a restarted daemon re-takes Firecracker's uffd ------------ */

/* Field 22 of /proc/PID/stat: tells a process from a later one with its pid. */
static int start_time(pid_t pid, unsigned long long *ret)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	p = strrchr(buf, ')');	/* the command name may hold anything */
	if (!p)
		return -EIO;
	/* After ")": field 3 (state) ... field 22 (starttime). */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", ret) != 1)
		return -EIO;
	return 0;
}

static void state_write(struct fld *d, struct fld_session *s, const char *json, size_t len)
{
	unsigned long long st;
	json_t *maps = json_loadb(json, len, 0, NULL), *rec;
	char tmp[sizeof(s->state_path) + 8];
	int r = -ENOMEM;

	if (!d->cfg.state_dir)
		goto out;
	r = start_time(s->pid, &st);
	if (r)
		goto out;
	r = -ENOMEM;
	snprintf(s->state_path, sizeof(s->state_path), "%s/firecracker-%d.json", d->cfg.state_dir, (int)s->pid);
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->state_path);
	rec = json_pack("{s:i,s:I,s:O}", "pid", (int)s->pid, "start_time", (json_int_t)st, "mappings", maps);
	if (rec) {
		r = json_dump_file(rec, tmp, JSON_COMPACT) ? -EIO : 0;
		json_decref(rec);
	}
	if (!r && rename(tmp, s->state_path))
		r = -errno;
	if (r)
		unlink(tmp);	/* a partial record is no record: leave nothing behind */
out:
	json_decref(maps);
	if (r && d->cfg.state_dir) {
		fld_log(0, "client %llu (Firecracker pid %d): no state record (%s): a restarted daemon cannot "
			"re-take its uffd", (unsigned long long)s->id, s->pid, strerror(-r));
		s->state_path[0] = 0;
	}
}

void fld_firecracker_forget(struct fld_session *s)
{
	if (s->state_path[0])
		unlink(s->state_path);
	s->state_path[0] = 0;
}

int fld_firecracker_accept(struct fld *d, struct fld_session *s)
{
	char why[160] = "";
	int r = fc_read_some(s);

	if (r == 0)
		return 0;	/* more to come */
	if (r < 0)
		snprintf(why, sizeof(why), "%s", r == -EMSGSIZE ? "message too long" : "no complete JSON array");
	if (r > 0 && s->fc_fd < 0) {
		snprintf(why, sizeof(why), "no userfaultfd with the mappings");
		r = -EBADMSG;
	}
	if (r > 0) {
		int fd = s->fc_fd;
		s->fc_fd = -1;
		r = fc_serve(d, s, s->fc_buf, s->fc_len, fd, true, why, sizeof(why));
	}
	free(s->fc_buf);
	s->fc_buf = NULL;
	fl__close(s->fc_fd);
	s->fc_fd = -1;
	if (r) {
		fld_log(0, "client %llu (Firecracker pid %d): handshake refused: %s", (unsigned long long)s->id,
			s->pid, why);
		d->bad_messages++;
		return r;
	}
	fld_log(0, "client %llu (Firecracker pid %d): serving %u guest memory mappings, %llu MiB from %s",
		(unsigned long long)s->id, s->pid, s->nranges, (unsigned long long)(s->bytes >> 20), d->cfg.mem_file);
	return 0;
}

/* The one userfaultfd among a process's fds (Firecracker has one). */
static int take_uffd(pid_t pid, int *ret_fd)
{
	char dir[64], path[340], link[64];
	struct dirent *de;
	int found = -1, n = 0, r;
	DIR *dd;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dd = opendir(dir);
	if (!dd)
		return -errno;
	while ((de = readdir(dd))) {
		ssize_t k;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = 0;
		if (!strcmp(link, "anon_inode:[userfaultfd]")) {
			found = atoi(de->d_name);
			n++;
		}
	}
	closedir(dd);
	if (n != 1)
		return n ? -ENOTUNIQ : -ENOENT;
	r = fl_uffd_take(pid, found, ret_fd);
	return r;
}

int fld_firecracker_recover(struct fld *d, struct fld_session *(*new_session)(struct fld *d, pid_t pid))
{
	struct dirent *de;
	int recovered = 0;
	DIR *dd;

	if (!d->cfg.state_dir || !(dd = opendir(d->cfg.state_dir)))
		return 0;
	while ((de = readdir(dd))) {
		char path[600], why[160] = "", *maps = NULL;
		unsigned long long st = 0, now = 0;
		json_t *rec = NULL;
		struct fld_session *s;
		int pid = 0, fd = -1, r;

		if (strncmp(de->d_name, "firecracker-", 12) || !strstr(de->d_name, ".json") ||
		    strstr(de->d_name, ".tmp"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->cfg.state_dir, de->d_name);
		rec = json_load_file(path, 0, NULL);
		r = rec && !json_unpack(rec, "{s:i,s:I}", "pid", &pid, "start_time", &st) && pid > 0 ? 0 : -EBADMSG;
		if (!r && (start_time(pid, &now) || now != st))
			r = -ESRCH;	/* that Firecracker is gone (its pid may be another's now) */
		if (!r)
			maps = json_dumps(json_object_get(rec, "mappings"), JSON_COMPACT);
		if (!r && !maps)
			r = -EBADMSG;
		if (!r)
			r = take_uffd(pid, &fd);
		if (r) {
			if (r != -ESRCH)
				fld_log(0, "%s: cannot re-take the uffd of pid %d: %s", path, pid, strerror(-r));
			unlink(path);
		} else if (!(s = new_session(d, pid))) {
			fl__close(fd);
		} else {
			r = fc_serve(d, s, maps, strlen(maps), fd, false, why, sizeof(why));
			if (r) {
				fld_log(0, "client %llu (Firecracker pid %d): cannot resume: %s", (unsigned long long)s->id,
					pid, why);
				fld_session_close(d, s, "not resumed");
			} else {
				snprintf(s->state_path, sizeof(s->state_path), "%s", path);
				recovered++;
				fld_log(0, "client %llu (Firecracker pid %d): re-took its uffd, serving %u mappings again",
					(unsigned long long)s->id, pid, s->nranges);
			}
		}
		free(maps);
		json_decref(rec);
	}
	closedir(dd);
	return recovered;
}
