// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What clients are restored from: images opened once by name (under the
 * image directory only), a store per image region, and templates (the
 * shared page cache of an image region) that every client of it maps
 * copy-on-write. Templates are keyed by the inode of their memfd, so a
 * client that resumes with a restarted daemon brings its page cache back,
 * and shares it only with clients that hold the same one.
 */
#include "faultlined.h"
#include "flutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* The path of `name` under the image directory, refusing anything that
 * resolves outside it (symlinks included). */
static int image_path(struct fld *d, const char *name, char *out, size_t len)
{
	char dir[PATH_MAX], joined[PATH_MAX], *real;
	size_t n;

	if (!fl__mgr_name_ok(name))
		return -EACCES;
	if (!realpath(d->cfg.images, dir))
		return -errno;
	if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", dir, name) >= sizeof(joined))
		return -ENAMETOOLONG;
	real = realpath(joined, NULL);
	if (!real)
		return -errno;
	n = strlen(dir);
	if (strncmp(real, dir, n) || real[n] != '/') {
		free(real);
		return -EACCES;
	}
	if (strlen(real) >= len) {
		free(real);
		return -ENAMETOOLONG;
	}
	memcpy(out, real, strlen(real) + 1);
	free(real);
	return 0;
}

int fld_image_get(struct fld *d, const char *name, struct fld_image **ret)
{
	struct fl_image_info info = { .sz = sizeof(info) };
	char path[PATH_MAX];
	struct fld_image *im;
	int r;

	for (im = d->images; im; im = im->next) {
		if (!strcmp(im->name, name)) {
			im->refs++;
			*ret = im;
			return 0;
		}
	}
	r = image_path(d, name, path, sizeof(path));
	if (r)
		return r;
	im = calloc(1, sizeof(*im));
	if (!im)
		return -ENOMEM;
	snprintf(im->name, sizeof(im->name), "%s", name);
	r = fl_image_open(path, 0, &im->img);
	if (!r)
		r = fl_image_info(im->img, &info);
	if (!r) {
		im->nregions = info.nregions;
		im->stores = calloc(info.nregions ? info.nregions : 1, sizeof(*im->stores));
		im->lengths = calloc(info.nregions ? info.nregions : 1, sizeof(*im->lengths));
		if (!im->stores || !im->lengths)
			r = -ENOMEM;
	}
	for (unsigned i = 0; !r && i < im->nregions; i++) {
		struct fl_image_region reg = { .sz = sizeof(reg) };
		r = fl_image_region(im->img, i, &reg);
		if (!r)
			im->lengths[i] = reg.length;
	}
	if (r) {
		fl_image_close(im->img);
		free(im->stores);
		free(im->lengths);
		free(im);
		return r;
	}
	im->refs = 1;
	im->next = d->images;
	d->images = im;
	fld_log(1, "image %s: %u regions", name, im->nregions);
	*ret = im;
	return 0;
}

void fld_image_put(struct fld *d, struct fld_image *im)
{
	struct fld_image **pp;

	if (!im || --im->refs)
		return;
	for (pp = &d->images; *pp; pp = &(*pp)->next) {
		if (*pp == im) {
			*pp = im->next;
			break;
		}
	}
	/* The stores read through the image: sessions hold a reference to
	 * it for as long as their regions (which hold the stores) live. */
	for (unsigned i = 0; i < im->nregions; i++)
		fl_store_unref(im->stores[i]);
	fl_image_close(im->img);
	free(im->stores);
	free(im->lengths);
	free(im);
}

int fld_image_store(struct fld_image *im, unsigned region, struct fl_store **ret)
{
	int r;

	if (region >= im->nregions)
		return -ERANGE;
	if (!im->stores[region]) {
		r = fl_image_store_new(im->img, region, &im->stores[region]);
		if (r)
			return r;
	}
	*ret = im->stores[region];
	return 0;
}

int fld_reopen(int fd, int flags, int *ret_fd)
{
	char path[64];
	int nfd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	nfd = open(path, flags | O_CLOEXEC);
	if (nfd < 0)
		return -errno;
	*ret_fd = nfd;
	return 0;
}

/* A template from a resuming client's memfd: a page cache of the right
 * size on tmpfs, which is all we can check (its bytes came from a daemon
 * that served this image, or it is that client's own business). */
static int check_resume_fd(int fd, uint64_t length, struct stat *st)
{
	struct statfs sfs;

	if (fstat(fd, st) || fstatfs(fd, &sfs))
		return -errno;
	if ((sfs.f_type != TMPFS_MAGIC && sfs.f_type != HUGETLBFS_MAGIC) || !S_ISREG(st->st_mode))
		return -EBADF;
	if ((uint64_t)st->st_size != length)
		return -ESTALE;
	return 0;
}

int fld_template_get(struct fld *d, struct fld_image *im, unsigned region, int resume_fd,
		     struct fld_template **ret)
{
	struct fl_template_opts o = { .sz = sizeof(o), .mem = FL_MEM_SHMEM, .memfd = -1 };
	struct fld_template *t;
	struct stat st = { 0 };
	int rw = -1, r;

	if (region >= im->nregions)
		return -ERANGE;
	if (resume_fd >= 0) {
		uint64_t len = (im->lengths[region] + 4095) / 4096 * 4096;
		r = check_resume_fd(resume_fd, len, &st);
		if (r)
			return r;
		for (t = d->templates; t; t = t->next) {
			if (t->dev == st.st_dev && t->ino == st.st_ino && t->image == im && t->region == region) {
				t->refs++;
				*ret = t;
				return 0;
			}
		}
		r = fld_reopen(resume_fd, O_RDWR, &rw);
		if (r)
			return r;
		o.flags |= FL_TEMPLATE_MEMFD;
		o.memfd = rw;
	} else {
		for (t = d->templates; t; t = t->next) {
			if (t->image == im && t->region == region && !t->dev) {
				t->refs++;
				*ret = t;
				return 0;
			}
		}
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		fl__close(rw);
		return -ENOMEM;
	}
	t->ro_fd = -1;
	r = fld_image_store(im, region, &o.store);
	if (!r) {
		o.name = im->name;
		r = fl_template_new(&o, &t->tpl);
	}
	fl__close(rw);
	if (!r)
		r = fld_reopen(fl_template_fd(t->tpl), O_RDONLY, &t->ro_fd);
	if (!r && fstat(t->ro_fd, &st))
		r = -errno;
	if (r) {
		fl_template_free(t->tpl);
		fl__close(t->ro_fd);
		free(t);
		return r;
	}
	/* Fresh templates are shared by name; resumed ones by inode only. */
	t->dev = resume_fd >= 0 ? st.st_dev : 0;
	t->ino = st.st_ino;
	t->image = im;
	im->refs++;
	t->region = region;
	t->refs = 1;
	t->next = d->templates;
	d->templates = t;
	fld_log(1, "template %s region %u: %zu bytes%s", im->name, region, fl_template_length(t->tpl),
		resume_fd >= 0 ? " (page cache resumed from a client)" : "");
	*ret = t;
	return 0;
}

void fld_template_put(struct fld *d, struct fld_template *t)
{
	struct fld_template **pp;

	if (!t || --t->refs)
		return;
	for (pp = &d->templates; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	fl_template_free(t->tpl);
	fl__close(t->ro_fd);
	fld_image_put(d, t->image);
	free(t);
}
