/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultline — userspace control of virtual memory through userfaultfd.
 *
 * Conventions shared by every public header:
 *  - fallible functions return int: >= 0 on success (may carry a count),
 *    a negative errno value on failure. -EOPNOTSUPP always means "the running
 *    kernel (or the feature mask, see FAULTLINE_MASK_FEATURES) lacks this".
 *  - constructors return the object through a trailing ret_ out-parameter,
 *    written only on success.
 *  - destructors accept NULL and return NULL.
 *  - options structs begin with `size_t sz`, set by the caller to
 *    sizeof(struct ...) so the structs can grow without breaking callers.
 *    Every function reads them by the same rules (see faultline(7)): sz 0
 *    is -EINVAL; a smaller sz (older caller) reads the missing members as
 *    0; a larger sz (newer caller) is accepted only when every byte past
 *    the members this build knows is zero, else -E2BIG (a member this
 *    build would silently ignore); sz > 4096 is -E2BIG. The struct is
 *    copied on entry and never read again. Output structs (stats, info)
 *    get at most sz bytes, a larger struct's unknown tail zeroed.
 *  - an fd member is read only when a flag says it is set (0 is a valid
 *    descriptor, so a zeroed struct must mean "none"): FL_REGION_MEMFD,
 *    FL_TEMPLATE_MEMFD.
 *  - the library never prints; it calls the log callback given in
 *    struct fl_engine_opts (there is no global logger).
 */
#ifndef FAULTLINE_COMMON_H
#define FAULTLINE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FL_BUILDING_LIB)
#define FL_API __attribute__((visibility("default")))
#else
#define FL_API
#endif

/* FL_VERSION_MAJOR, _MINOR, _PATCH and _STRING: generated from meson.build. */
#include <faultline/version.h>

/* Returns the library's version as "MAJOR.MINOR.PATCH". */
FL_API const char *fl_version(void);

enum fl_log_level {
	FL_LOG_ERROR = 0,
	FL_LOG_WARN = 1,
	FL_LOG_INFO = 2,
	FL_LOG_DEBUG = 3,
};

/*
 * Log callback: called from any thread, including fault-service threads, so
 * it must be thread-safe and must not touch memory that faultline serves.
 */
typedef void (*fl_log_fn)(enum fl_log_level level, const char *msg, void *ctx);

/* An address range [start, start + len) in some address space. */
/* Latency histogram buckets: log2-linear, 8 sub-buckets per power of two. */
#define FL_LAT_BUCKETS 256

struct fl_range {
	uint64_t start;
	uint64_t len;
};

#ifdef __cplusplus
}
#endif
#endif
