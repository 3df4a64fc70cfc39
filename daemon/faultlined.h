/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultlined: the manager daemon (see faultlined(8)). One epoll loop in the
 * main thread owns the sockets, the sessions, signals and a timer; the fault
 * engine's handler threads serve the faults of every client's uffd. The
 * only state the two share is the fork table (on_event runs in a handler
 * thread), behind `mu`.
 */
#ifndef FAULTLINED_H
#define FAULTLINED_H

#include <faultline/faultline.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mgr-proto.h"

#define FLD_MAX_ALLOWED_UIDS 32

struct fld_config {
	const char *socket;		/* the manager socket */
	const char *fc_socket;		/* Firecracker handshake socket (NULL: none) */
	const char *mem_file;		/* Firecracker guest memory file */
	const char *images;		/* directory images are named relative to */
	const char *spaces;		/* directory of the shared spaces (DIR/NAME) */
	uid_t allowed_uids[FLD_MAX_ALLOWED_UIDS];
	unsigned nallowed;		/* 0: root and the daemon's own uid */
	unsigned max_clients;
	unsigned max_ranges;		/* per client */
	uint64_t max_bytes;		/* per client, address space served; 0: no limit */
	unsigned max_inflight;		/* pages resolved per fault, per client */
	unsigned threads;		/* fault-service threads */
	int verbose;			/* 0 events, 1 + debug */
	bool supervise;
	unsigned max_restarts;		/* supervisor: within restart_window_s */
	unsigned restart_window_s;
	const char *state_dir;		/* Firecracker state records (default: the socket's directory) */
	int listen_fd;			/* inherited from the supervisor or systemd, or -1 */
	int fc_listen_fd;
	bool activated;			/* systemd passed the sockets: never bind or remove them */
	/* readiness (ready.c) */
	const char *pid_file;
	int ready_fd;			/* --ready-fd, or -1 */
	pid_t supervisor_pid;		/* --supervise: the pid to signal; 0 without */
	bool announced;			/* readiness said by this process */
};

struct fld_image {
	struct fld_image *next;
	char name[FL_MGR_MAX_NAME + 1];
	struct fl_image *img;
	unsigned nregions;
	struct fl_store **stores;	/* per region, made on first use */
	uint64_t *lengths;
	unsigned refs;
};

struct fld_template {
	struct fld_template *next;
	struct fld_image *image;
	unsigned region;
	struct fl_template *tpl;
	int ro_fd;			/* what clients get */
	dev_t dev;
	ino_t ino;
	unsigned refs;
};

/*
 * A space the daemon shares (spaces.c): opened once per name and version
 * (0: live) and kept until the daemon exits, so that shared writes stay in
 * its page caches after every process detached. users[i] counts the
 * sources of segment i that sessions hold: a restarted daemon adopts a
 * client's page cache only for a segment nobody uses yet.
 */
struct fld_shared {
	struct fld_shared *next;
	char name[FL_MGR_MAX_SPACE_NAME + 1];
	uint64_t version;		/* 0: live; else that committed version */
	uint64_t opened_version;	/* the version its pages start from */
	struct fl_space *sp;
	unsigned nsegs;
	int *ro_fds;			/* per segment: what read-only attachers get */
	unsigned *users;
	char **images;			/* the image files it serves, as opened */
	unsigned nimages;
	unsigned opens;			/* sessions that have it open (SPACE_OPEN) */
};

/* A space a session opened (SPACE_OPEN), until SPACE_CLOSE. */
struct fld_session_space {
	struct fld_shared *sh;
	unsigned flags;			/* FL_MGR_SPACE_* */
	bool closed;
};

/* A source a session opened: what its ATTACH ranges name by id. */
struct fld_source {
	uint32_t id;
	uint32_t kind;			/* FL_MGR_SRC_* */
	struct fld_image *image;
	unsigned region;
	struct fld_template *tpl;	/* templates */
	struct fld_shared *shared;	/* segments: the space, */
	unsigned seg;			/* the segment's index */
	bool private_map;		/* mapped copy-on-write */
	bool writable;			/* shared read-write: the client gets an O_RDWR fd */
	uint32_t mem;			/* segments: 1 shmem, 2 hugetlb */
	uint64_t length;
	uint32_t page_size;
	struct fl_region **regions;	/* segments: the engine's regions serving it */
	unsigned nregions;
};

enum fld_kind {
	FLD_CLIENT = 0,		/* the manager protocol */
	FLD_OBSERVER = 1,	/* stats only */
	FLD_FIRECRACKER = 2,	/* one handshake, then only faults */
};

struct fld_session {
	struct fld_session *next;
	struct fld *d;
	uint64_t id;			/* client id, in logs and stats */
	uint64_t token;
	enum fld_kind kind;
	bool hello;
	int sock;
	int pidfd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int space;			/* engine space; -1 before ATTACH */
	uint64_t parent_id;		/* claimed fork: the parent's client id */
	uint64_t beacon;		/* beacon page address (0: none) */
	struct fld_source *sources;
	unsigned nsources;
	struct fld_session_space *spaces;	/* shared spaces opened */
	unsigned nspaces;
	unsigned nranges;
	uint64_t bytes;
	struct fl_region **regions;
	unsigned nregions;
	uint64_t started_ns;
	int refuse_err;			/* policy: answer the first message with this */
	char refuse_msg[96];
	bool closed;			/* freed at the end of the loop's batch */
	bool draining;			/* session over, process alive: its uffd still read */
	/* Firecracker: the handshake as it arrives, and the state record */
	char *fc_buf;
	size_t fc_len;
	int fc_fd;
	char state_path[640];
};

/* A forked child's space, until the child claims it. */
struct fld_fork {
	struct fld_fork *next;
	uint64_t token;
	int space;
	uint64_t parent_id;
	uint64_t beacon;
	pid_t parent_pid;
};

struct fld {
	struct fld_config cfg;
	struct fl_engine *engine;
	int epfd, lfd, fc_lfd, sigfd, timerfd;
	struct fld_session *sessions;
	unsigned nsessions;
	uint64_t next_id;
	struct fld_image *images;
	struct fld_template *templates;
	struct fld_shared *shared;	/* shared spaces (spaces.c) */
	char space_msg[FL_MGR_MAX_ERRMSG + 1];	/* what lib/space said last */
	struct fl_store *mem_store;	/* Firecracker guest memory */
	pthread_mutex_t mu;		/* forks, spaces */
	struct fld_fork *forks;
	struct fld_space { uint64_t client, beacon; } *spaces;	/* by space id */
	size_t nspaces;
	struct fl__mgr_range *ranges;	/* ATTACH decoding (main thread) */
	struct fl_region **added;	/* ATTACH: the regions it added so far */
	uint64_t started_ns;
	uint64_t refused, bad_messages, resumed, claimed;
	bool stopping;
	uint8_t *buf;
};

/* log.c */
void fld_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fld_log_cb(enum fl_log_level level, const char *msg, void *ctx);
extern int fld_verbose;

/* crashpoint.c: SIGKILL ourselves at point `name` when FAULTLINED_CRASH_AT
 * names it (tests of recovery). */
void fld_crash_point(const char *name);

/* ready.c: socket activation (sd_listen_fds) into cfg's listen fds, at start;
 * readiness (--ready-fd, --pid-file, sd_notify) once the sockets accept;
 * STOPPING and the pid file's removal at exit. */
int fld_ready_activation(struct fld_config *cfg);
void fld_ready_notify(struct fld *d);
void fld_ready_stopping(const struct fld_config *cfg);

/* loop.c */
int fld_run(struct fld *d);
/* A listening socket (its directory made 0700, or 0711 when `others`:
 * --allow-uid admits other users): the manager's is SOCK_SEQPACKET,
 * Firecracker's SOCK_STREAM. -EADDRINUSE when a daemon answers there. */
int fld_listen(const char *path, int type, bool others, int *ret_fd);
bool fld_others_allowed(const struct fld_config *cfg);
void fld_session_close(struct fld *d, struct fld_session *s, const char *why);
int fld_reply_error(struct fld_session *s, uint32_t seq, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Which client a space serves, and its beacon page (for event logs and
 * forks; called from handler threads too). */
void fld_space_set(struct fld *d, int space, uint64_t client_id, uint64_t beacon);
void fld_space_get(struct fld *d, int space, uint64_t *ret_client_id, uint64_t *ret_beacon);

/* session.c */
int fld_session_message(struct fld *d, struct fld_session *s);
void fld_on_event(void *ctx, int space, const struct fl_event *event);
uint64_t fld_random64(void);
/* Is fd a userfaultfd (and with which features, as the kernel says)? -EBADF if not. */
int fld_uffd_features(int fd, uint64_t *ret);

/* sources.c */
int fld_image_get(struct fld *d, const char *name, struct fld_image **ret);
void fld_image_put(struct fld *d, struct fld_image *im);
int fld_image_store(struct fld_image *im, unsigned region, struct fl_store **ret);
int fld_template_get(struct fld *d, struct fld_image *im, unsigned region, int resume_fd,
		     struct fld_template **ret);
void fld_template_put(struct fld *d, struct fld_template *t);
/* A new open file description of fd's file (/proc/self/fd), with `flags`:
 * what a read-only or read-write descriptor of a memfd is made from. */
int fld_reopen(int fd, int flags, int *ret_fd);

/* statfs(2) f_type of a page cache's filesystem (linux/magic.h, not
 * always installed). */
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

/* spaces.c: shared address spaces. The requests answer the session
 * themselves (0, or -EBADMSG for a malformed one). */
int fld_space_open(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p);
int fld_space_close(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p);
int fld_space_commit(struct fld *d, struct fld_session *s, const struct fl__mgr_hdr *h, const uint8_t *p);
/* OPEN of a segment of a space the session opened (resume_fd: the page
 * cache a resuming client brings, or -1). 0 with src filled, or the
 * -errno with *why. */
int fld_segment_open(struct fld *d, struct fld_session *s, const char *space, unsigned index, int resume_fd,
		     struct fld_source *src, char *why, size_t whylen);
/* A region serving a session's segment source (add_region): o with the
 * segment's page cache and store (fl__space_segment_region_new()). */
int fld_segment_region_new(const struct fld_source *src, struct fl_engine *e, const struct fl_region_opts *o,
			   struct fl_region **ret_region);
/* The fd a SOURCE reply carries for a new segment source. */
int fld_segment_fd(const struct fld_source *src, const struct fld_session *s);
void fld_segment_put(struct fld_source *src);
/* Region r (in the engine until its space is released) serves segment src. */
int fld_segment_add_region(struct fld_source *src, struct fl_region *r);
/* Before s's space is released: what its segment regions brought into the
 * page caches goes into the segments' records, and the regions are forgotten. */
void fld_segments_absorb(struct fld_session *s);
void fld_session_spaces_free(struct fld_session *s);
void fld_shared_free_all(struct fld *d);

/* stats.c */
char *fld_stats_json(struct fld *d);

/* firecracker.c */
/* Read more of a handshake; 0 when served or when more is to come, -errno: refused. */
int fld_firecracker_accept(struct fld *d, struct fld_session *s);
/* The session's process is gone: drop its state record. */
void fld_firecracker_forget(struct fld_session *s);
/* At start: re-take the uffd of every Firecracker a state record names. */
int fld_firecracker_recover(struct fld *d, struct fld_session *(*new_session)(struct fld *d, pid_t pid));

/* checks.c: what a peer sends, checked without a running daemon (and fuzzed). */
#define FLD_FC_MAX_MAPPINGS 64
struct fld_fc_mapping {
	uint64_t base, size, offset, page_size;
};
/* Firecracker's JSON mappings (1..FLD_FC_MAX_MAPPINGS), each aligned to its
 * 4 KiB or 2 MiB pages, inside the guest memory file of mem_size bytes, no
 * two overlapping. 0 with maps[0..*ret_n), or -errno with *why saying what. */
int fld_fc_mappings(const char *json, size_t len, uint64_t mem_size, struct fld_fc_mapping *maps, size_t *ret_n,
		    char *why, size_t whylen);
/* An ATTACH's ranges against session s's sources, ranges and bytes and
 * cfg's limits: 0 with the bytes they add, or the -errno to answer with
 * (*why the message). */
int fld_attach_check(const struct fld_config *cfg, const struct fld_session *s, const struct fl__mgr_range *ranges,
		     uint32_t n, uint64_t *ret_bytes, char *why, size_t whylen);

/* supervise.c */
int fld_supervise(struct fld_config *cfg, int argc, char **argv);

#endif
