/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel interface layer (lib/kernel): uffd creation, the API handshake,
 * every ioctl, feature probing, PAGEMAP_SCAN, uffd hand-off. Above lib/util
 * only; the one place that knows the kernel's constants (compat/).
 */
#ifndef FL_KERNEL_H
#define FL_KERNEL_H

#include "flutil.h"
#include "compat/uffd-compat.h"

/* feature.c: the feature set FAULTLINE_MASK_FEATURES=new hides. */
uint64_t fl__features_newer_than_6_1(void);

#endif
