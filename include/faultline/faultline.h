/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* faultline: include this one header for the whole API (see faultline(7)). */
#ifndef FAULTLINE_H
#define FAULTLINE_H

#include <faultline/common.h>
#include <faultline/uffd.h>
#include <faultline/store.h>
#include <faultline/engine.h>
#include <faultline/region.h>
#include <faultline/guard.h>
#include <faultline/image.h>
#include <faultline/remote.h>
#include <faultline/redis.h>
#include <faultline/watch.h>
#include <faultline/snapshot.h>
#include <faultline/clone.h>
#include <faultline/space.h>
#include <faultline/workingset.h>
#include <faultline/client.h>
#include <faultline/migrate.h>

#endif
