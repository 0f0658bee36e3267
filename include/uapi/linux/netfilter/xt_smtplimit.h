/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * xt_smtplimit: per-source limit of new connections (the ABI shared by the
 * kernel module and the iptables extension).
 */
#ifndef _XT_SMTPLIMIT_H
#define _XT_SMTPLIMIT_H

#include <linux/types.h>

/* Rates are stored as attempts per day, so every N/UNIT is an exact integer. */
#define XT_SMTPLIMIT_SECONDS_PER_DAY	86400
#define XT_SMTPLIMIT_RATE_MIN		1U		   /* 1/day */
#define XT_SMTPLIMIT_RATE_MAX		(10000U * 86400U) /* 10000/second */

#define XT_SMTPLIMIT_BURST_MIN		1U
#define XT_SMTPLIMIT_BURST_MAX		1000000U
#define XT_SMTPLIMIT_BURST_DEFAULT	5U

#define XT_SMTPLIMIT_HTABLE_MAX_DEFAULT	65536U
#define XT_SMTPLIMIT_HTABLE_MAX_LIMIT	16777216U

#define XT_SMTPLIMIT_SRCMASK_IPV4	32	/* default for IPv4 */
#define XT_SMTPLIMIT_SRCMASK_IPV6	64	/* default for IPv6 */

/* A name is 1..127 bytes of [A-Za-z0-9._-], NUL-terminated, not "." or "..". */
#define XT_SMTPLIMIT_NAME_LEN		128

enum {
	XT_SMTPLIMIT_F_ABOVE	= 1 << 0,	/* match when over the limit */
	XT_SMTPLIMIT_F_STRICT	= 1 << 1,	/* a denied attempt costs too */
};

#define XT_SMTPLIMIT_F_ALL	(XT_SMTPLIMIT_F_ABOVE | XT_SMTPLIMIT_F_STRICT)

/*
 * Writing /proc/net/ip{,6}t_smtplimit/NAME: lines of commands, their syntax
 * in kernel/smtplimit_cmd.h; one write() is applied whole or not at all, and
 * so is a transaction, the writes from "{" to "}".
 */
#define XT_SMTPLIMIT_WRITE_MAX		(128 * 1024)	/* bytes per write() */
#define XT_SMTPLIMIT_LINE_MAX		64	/* bytes per line, without '\n' */
#define XT_SMTPLIMIT_BAN_MAX		31536000U	/* seconds: a year */
#define XT_SMTPLIMIT_TXN_MAX		(1U << 20)	/* commands held by "{" */

struct xt_smtplimit_priv;

struct xt_smtplimit_mtinfo {
	__u32 rate;		/* attempts per day */
	__u32 burst;		/* attempts a full bucket allows at once */
	__u32 htable_max;	/* most sources the table tracks */
	__u8 srcmask;		/* prefix length sources are grouped by */
	__u8 flags;		/* XT_SMTPLIMIT_F_* */
	__u16 reserved;		/* must be zero */
	char name[XT_SMTPLIMIT_NAME_LEN];	/* table, shared by name */

	/* Kernel-private, hidden from userspace (.usersize, .userspacesize). */
	struct xt_smtplimit_priv *priv __attribute__((aligned(8)));
};

#endif /* _XT_SMTPLIMIT_H */
