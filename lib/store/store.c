// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The store wrapper: a versioned vtable, a reference count, bounds checks
 * (never zeros past the end) and the fault-injection controls every store
 * understands.
 */
#include "kernel.h"
#include "store-internal.h"

#include <stdlib.h>
#include <unistd.h>

int fl_store_new(const struct fl_store_ops *ops, void *ctx, uint64_t size,
		 struct fl_store **ret_store)
{
	struct fl_store *s;
	struct fl_store_ops o;
	int r;

	if (!ops || !ret_store)
		return -EINVAL;
	r = FL_OPTS_COPY(o, ops);
	if (r)
		return r;
	if (o.version != FL_STORE_OPS_VERSION || !o.read)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ops = o;	/* a copy: the caller's table need not outlive the store */
	s->ctx = ctx;
	s->size = size;
	atomic_init(&s->refs, 1);
	*ret_store = s;
	return 0;
}

struct fl_store *fl_store_ref(struct fl_store *s)
{
	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

struct fl_store *fl_store_unref(struct fl_store *s)
{
	if (!s)
		return NULL;
	if (atomic_fetch_sub(&s->refs, 1) == 1) {
		if (s->ops.destroy)
			s->ops.destroy(s->ctx);
		free(s);
	}
	return NULL;
}

uint64_t fl_store_size(const struct fl_store *s)
{
	return s->size;
}

const char *fl_store_name(const struct fl_store *s)
{
	return s->ops.name ? s->ops.name : "custom";
}

static bool injected_failure(struct fl_store *s, uint64_t off, size_t len)
{
	uint64_t fo = atomic_load_explicit(&s->fail_off, memory_order_relaxed);
	uint64_t fl = atomic_load_explicit(&s->fail_len, memory_order_relaxed);
	return fl && off < fo + fl && fo < off + len;
}

const uint8_t *fl__store_direct(struct fl_store *s, uint64_t off, uint64_t len)
{
	if (!s->direct || off > s->size || len > s->size - off ||
	    atomic_load_explicit(&s->delay_us, memory_order_relaxed) || injected_failure(s, off, len))
		return NULL;
	return s->direct + off;
}

int fl_store_read(struct fl_store *s, struct fl_store_iov *iov, unsigned n)
{
	uint64_t delay = atomic_load_explicit(&s->delay_us, memory_order_relaxed);
	int r, first_err = 0;

	if (!n)
		return 0;
	if (delay)
		usleep((useconds_t)delay);
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].flags_in & ~FL_STORE_IN_URGENT)
			return -EINVAL;	/* unknown, or an out flag in the in field */
		iov[i].flags_out = 0;
		iov[i].result = 0;
		if (iov[i].offset > s->size || iov[i].len > s->size - iov[i].offset)
			return -ERANGE;
	}
	r = s->ops.read(s->ctx, iov, n);
	for (unsigned i = 0; i < n; i++) {
		if (!iov[i].result && injected_failure(s, iov[i].offset, iov[i].len))
			iov[i].result = -EIO;
		if (iov[i].result && !first_err)
			first_err = iov[i].result;
	}
	if (r < 0 && !first_err)
		first_err = r;
	return first_err;
}

static bool injected_write_failure(struct fl_store *s, uint64_t off, size_t len)
{
	uint64_t fo = atomic_load_explicit(&s->wfail_off, memory_order_relaxed);
	uint64_t fl = atomic_load_explicit(&s->wfail_len, memory_order_relaxed);
	return fl && off < fo + fl && fo < off + len;
}

int fl_store_write(struct fl_store *s, const struct fl_store_iov *iov, unsigned n)
{
	if (!s->ops.write)
		return -EOPNOTSUPP;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].offset > s->size || iov[i].len > s->size - iov[i].offset)
			return -ERANGE;
		/* Before anything is written: an injected failure writes
		 * nothing of the batch, the worst case a caller must survive. */
		if (injected_write_failure(s, iov[i].offset, iov[i].len))
			return -EIO;
	}
	return s->ops.write(s->ctx, iov, n);
}

int fl__store_writable(const struct fl_store *s)
{
	return s->ops.write && !s->read_only ? 0 : -EROFS;
}

int fl_store_flush(struct fl_store *s)
{
	return s->ops.flush ? s->ops.flush(s->ctx) : -EOPNOTSUPP;
}

int fl_store_ctl(struct fl_store *s, int op, void *arg)
{
	int ret;

	switch (op) {
	case FL_STORE_CTL_FAIL_AT: {
		const uint64_t *r = arg;
		if (!r)
			return -EINVAL;
		atomic_store(&s->fail_off, r[0]);
		atomic_store(&s->fail_len, r[1]);
		return 0;
	}
	case FL_STORE_CTL_FAIL_WRITES: {
		const uint64_t *r = arg;
		if (!r)
			return -EINVAL;
		atomic_store(&s->wfail_off, r[0]);
		atomic_store(&s->wfail_len, r[1]);
		return 0;
	}
	case FL_STORE_CTL_DELAY_US:
		if (!arg)
			return -EINVAL;
		atomic_store(&s->delay_us, *(const uint64_t *)arg);
		return 0;
	}
	if (!s->ops.ctl)
		return -EOPNOTSUPP;
	ret = s->ops.ctl(s->ctx, op, arg);
	/* -ENOTTY was the documented "unknown op" before 0.1: keep custom
	 * stores written for it working, with one meaning for callers. */
	return ret == -ENOTTY ? -EOPNOTSUPP : ret;
}
