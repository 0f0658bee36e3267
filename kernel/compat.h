/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences between the oldest supported kernel (5.10) and the
 * newest, decided by the HAVE_* probes in Kbuild. The module uses no timer
 * (deferrable delayed work instead), and get_random_u32(), the rhashtable
 * and seq_file calls it makes are the same across that range.
 */
#ifndef _SMTPLIMIT_COMPAT_H
#define _SMTPLIMIT_COMPAT_H

#include <linux/proc_fs.h>

#ifndef HAVE_PDE_DATA
#define pde_data(inode) PDE_DATA(inode)	/* before v5.17 */
#endif

#endif /* _SMTPLIMIT_COMPAT_H */
