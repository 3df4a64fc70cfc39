/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the snapshot code needs from a write watch beyond the public API:
 * a hook that runs in the SYNC backend's fault thread before a written page
 * is made writable, so a copy-on-write snapshot can save the page's old
 * contents first (copy-before-write).
 */
#ifndef FL_WATCH_INTERNAL_H
#define FL_WATCH_INTERNAL_H

#include <faultline/watch.h>

/*
 * Called with [addr, addr + len) still write-protected (len is the
 * granularity: one page, or one huge page), before the watch records the
 * page as written and unprotects it. The faulting thread is blocked until
 * the hook returns. A negative return does not block the writer: the watch
 * still unprotects and wakes it (never leave a thread hanging); the hook's
 * owner records the error itself. For a write to an unpopulated page the
 * page reads as zeros when the hook runs.
 */
typedef int (*fl__watch_hook_fn)(void *ctx, uint64_t addr, uint64_t len);

/*
 * Install (fn != NULL) or remove (fn == NULL) the hook. SYNC backend only
 * (-EOPNOTSUPP otherwise). Removing returns only once no hook call is
 * running, so the caller may free ctx afterwards.
 */
int fl__watch_set_hook(struct fl_watch *watch, fl__watch_hook_fn fn, void *ctx);

#endif
