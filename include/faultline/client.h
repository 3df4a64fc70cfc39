/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Clients of faultlined(8): a process whose lazy memory is served by the
 * manager daemon instead of a handler of its own.
 *
 * The client maps its memory with fl_client_map() (an image region copied
 * in on demand, a shared template mapped copy-on-write, or zero-filled
 * memory), then fl_client_attach() creates a userfaultfd, registers every
 * range, and hands the uffd to the daemon over the socket with the map of
 * what backs each range. From then on faults are served by faultlined; the
 * client runs no thread for that. It keeps its own reference to the uffd,
 * so if the daemon dies its faulting threads wait instead of reading the
 * zeros the kernel would otherwise install.
 *
 * Recovery: unless FL_CLIENT_NO_GUARD, attach also starts one guard thread
 * (fl_guard_new(3)) that watches the daemon. When the daemon dies it
 * reconnects to the socket every 50 ms and resumes the session with a new
 * faultlined (same uffd, same map, the same template page caches), which
 * wakes every range so waiting faults are re-delivered. If no daemon
 * resumes it within grace_ms, the guard poisons every page not yet
 * delivered: the faulting threads get SIGBUS, never zeros (without
 * UFFD_FEATURE_POISON the process gets SIGBUS).
 *
 * Events: the uffd asks for FORK, REMAP, REMOVE and UNMAP events, so
 * faultlined follows fork(2), mremap(2), madvise(MADV_DONTNEED) (later
 * faults there read zeros: the application discarded the pages) and
 * munmap(2) of attached memory. A forked child is served lazily with the
 * parent's copy-on-write semantics; it should call fl_client_after_fork()
 * so that it holds its own uffd (and its own guard) too. Without
 * CAP_SYS_PTRACE the kernel refuses EVENT_FORK: then attached memory is
 * marked MADV_DONTFORK, so that a child gets no copy of it (SIGSEGV if it
 * touches it), never the zeros an unserved copy would read.
 *
 * Thread safety: one thread at a time per client object.
 */
#ifndef FAULTLINE_CLIENT_H
#define FAULTLINE_CLIENT_H

#include <faultline/common.h>
#include <faultline/guard.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_client;

/* Client flags. */
#define FL_CLIENT_NO_GUARD	(1u << 0)	/* no guard thread: no reconnect, no timeout */

struct fl_client_opts {
	size_t sz;			/* sizeof(struct fl_client_opts) */
	const char *socket;		/* faultlined's socket; NULL: $FAULTLINED_SOCKET or
					 * /run/faultlined/faultlined.sock */
	unsigned flags;			/* FL_CLIENT_* */
	unsigned grace_ms;		/* how long to wait for a restarted daemon; 0 = 5000 */
	unsigned timeout_ms;		/* per request; 0 = 10000 */
	fl_log_fn log;			/* NULL: silent; gets the daemon's reason for a
					 * refused request (e.g. which uid, owner and mode);
					 * called from the guard thread too */
	void *log_ctx;
};

/*
 * Connect to faultlined and open a session. Errors: -ENOENT / -ECONNREFUSED
 * (no daemon there), -EPERM (the daemon's policy refuses this uid),
 * -EPROTONOSUPPORT (another protocol version), -ETIMEDOUT.
 */
FL_API int fl_client_connect(const struct fl_client_opts *opts, struct fl_client **ret_client);

enum fl_client_source {
	FL_SOURCE_ZERO = 0,		/* zero-filled memory (anonymous) */
	FL_SOURCE_IMAGE = 1,		/* an image region, copied into private anonymous memory */
	FL_SOURCE_TEMPLATE = 2,		/* an image region through the daemon's shared page cache:
					 * every client of it shares the physical pages until it writes */
};

struct fl_client_map_opts {
	size_t sz;			/* sizeof(struct fl_client_map_opts) */
	enum fl_client_source source;
	const char *image;		/* image name, relative to the daemon's image directory */
	unsigned region;		/* region of the image */
	uint64_t offset;		/* byte of the region the mapping starts at (page-aligned;
					 * 0 for templates) */
	size_t length;			/* bytes; 0: the rest of the region (required for ZERO) */
	void *addr;			/* NULL: anywhere; else MAP_FIXED_NOREPLACE there */
};

/*
 * Map lazy memory: asks the daemon for the source (for a template the
 * daemon sends its page cache, mapped here MAP_PRIVATE), maps it, and, when
 * the client is attached already, registers it and tells the daemon.
 * *ret_addr is the mapping. Errors: -ENOENT (no such image), -EACCES (a
 * name outside the daemon's image directory), -ERANGE (offset or length
 * beyond the region), -EDQUOT (the daemon's per-client limits), -EINVAL
 * (bad options; a template with a non-zero offset).
 */
FL_API int fl_client_map(struct fl_client *client, const struct fl_client_map_opts *opts,
			 void **ret_addr);

/*
 * Create the uffd, register every mapped range (MISSING; MISSING|MINOR for
 * templates), send the uffd and the region map, start the guard. Errors:
 * -EOPNOTSUPP (the kernel lacks a needed uffd feature), -EDQUOT, -EPERM.
 */
FL_API int fl_client_attach(struct fl_client *client);

/*
 * In the child after fork(): claim the child's uffd from the daemon (which
 * got it from the FORK event) and start the child's own guard, so that the
 * child too survives a daemon restart. The child then owns a new session;
 * the parent's object must not be used in the child otherwise (free it with
 * fl_client_free(), which does not detach the parent). A daemon that dies
 * during the hand-off takes the child's uffd along: the child then waits
 * (up to grace_ms) for a restarted daemon and attaches its memory anew on
 * a uffd of its own; failing that it fails closed (its image and template
 * ranges PROT_NONE: SIGSEGV, never zeros) and returns the error. Errors:
 * -ENOENT (no fork events; or no token and no daemon came back),
 * -ECONNRESET / -ECONNREFUSED (no daemon came back), -EALREADY (called in
 * the process that owns the session: claimed already, or not a forked
 * child).
 */
FL_API int fl_client_after_fork(struct fl_client *client);

/* The session's uffd (-1 before attach). The client keeps it open. */
FL_API int fl_client_uffd(const struct fl_client *client);
/* pid of the daemon that serves (or last served) the session; 0 before connect. */
FL_API pid_t fl_client_daemon_pid(const struct fl_client *client);
/* The guard's state (FL_GUARD_IDLE without a guard). */
FL_API enum fl_guard_state fl_client_guard_state(const struct fl_client *client);

/*
 * Detach: the daemon delivers every page not delivered yet (pages it cannot
 * deliver are poisoned), then lets the uffd go; the memory stays mapped and
 * is the client's own. Returns 0 or -errno (the daemon is gone: then the
 * guard's rules apply until the process exits).
 */
FL_API int fl_client_detach(struct fl_client *client);
/*
 * Free the client object: stop the guard, close the socket and the uffd.
 * Call fl_client_detach() first unless the process is about to exit (an
 * attached client's lazy pages would then be poisoned by the daemon).
 * Accepts NULL; returns NULL.
 */
FL_API struct fl_client *fl_client_free(struct fl_client *client);

/*
 * Shared address spaces (see <faultline/space.h> and faultlined(8)): a
 * space NAME is the persistent space directory NAME in the daemon's
 * --spaces directory. The daemon opens it once and owns one page cache
 * per segment; every client that attaches it maps that page cache at the
 * segment's base, and the daemon serves the faults. A page exists once in
 * memory however many processes attach it; a write through a shared
 * read-write attachment is seen by every other shared attachment at once.
 * Permission is the space directory's, like a file's (owner, group and
 * mode bits against the client's uid and gid; uid 0 may do anything): a
 * read-only or private attach needs r, a shared read-write attach r and w,
 * a commit w. The daemon keeps a space's page caches while it runs, so
 * shared writes outlive the processes that made them until the daemon
 * exits; only a commit makes them durable.
 *
 * Recovery: the client keeps each segment's page cache fd; a restarted
 * daemon takes it back (the guard's resume), so uncommitted shared writes
 * survive a daemon killed with SIGKILL, and clients that resume the same
 * segment end up on the same page cache. If no daemon comes back within
 * grace_ms, the pages not yet mapped fail closed (SIGBUS), never zeros.
 */
#define FL_CLIENT_SPACE_RDONLY	(1u << 0)	/* map read-only: a write is SIGSEGV */
#define FL_CLIENT_SPACE_PRIVATE	(1u << 1)	/* copy-on-write: writes stay in this process */

struct fl_client_space_opts {
	size_t sz;			/* sizeof(struct fl_client_space_opts) */
	unsigned flags;			/* FL_CLIENT_SPACE_* */
	uint64_t version;		/* 0: the live space; else that committed version
					 * (read-only or private only) */
};

/*
 * Map every segment of space `name` at its base (MAP_FIXED_NOREPLACE;
 * MAP_SHARED, or MAP_PRIVATE with FL_CLIENT_SPACE_PRIVATE), registered on
 * the session's uffd and served by the daemon before the call returns: the
 * client must be attached (fl_client_attach()) first, because a segment
 * page touched while nobody serves it would become a zero page in the page
 * cache every process shares. opts may be NULL (shared, read-write, live).
 * Errors: -ENOTCONN (not attached), -EINVAL (a bad name, flags or
 * options), -EALREADY (attached in
 * this client already), -ENOENT (no such space, or no such version),
 * -EACCES (the space's mode refuses this uid; the daemon logs who and
 * why), -EROFS (a version asked for read-write and shared), -EBADMSG (a
 * corrupt manifest or image), -EEXIST (a segment's range is in use in
 * this process), -ENOMEM (hugetlb segments without free huge pages), and
 * those of fl_client_map(). On error nothing is mapped.
 */
FL_API int fl_client_space_attach(struct fl_client *client, const char *name,
				  const struct fl_client_space_opts *opts);

/* Root `root` of the attached space (the roots of the version attached).
 * Errors: -ENOENT (no such root, or the space is not attached here). */
FL_API int fl_client_space_root(struct fl_client *client, const char *name, const char *root, void **ret_ptr);

/*
 * Unmap every segment of the space. Shared writes stay in the daemon's
 * page cache; private ones are dropped. No thread may touch the segments
 * during or after the call. Errors: -ENOENT (not attached here).
 */
FL_API int fl_client_space_detach(struct fl_client *client, const char *name);

/*
 * Have the daemon commit the space's page caches as a new version
 * (fl_space_commit(3): incremental; a crash leaves the previous version
 * intact). Consistent only if no process writes the space meanwhile: a
 * commit does not pause writers in other processes. *ret_version
 * (optional) gets the new version. Errors: -ENOENT (not attached here),
 * -EACCES (no w permission), -EROFS (attached at an older version), the
 * commit's errors (-ENOSPC, -EIO).
 */
FL_API int fl_client_space_commit(struct fl_client *client, const char *name, uint64_t *ret_version);

/*
 * Ask a daemon for its statistics: a NUL-terminated JSON document
 * (malloc'd, *ret_json; free() it). Errors as fl_client_connect().
 */
FL_API int fl_manager_stats(const char *socket, unsigned timeout_ms, char **ret_json);

#ifdef __cplusplus
}
#endif
#endif
