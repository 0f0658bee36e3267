/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The syntax of a proc write's lines, /proc/net/ip{,6}t_smtplimit/NAME: the
 * one home of what a line means. Free of kernel-only dependencies: the
 * module, the admin command (userspace/smtplimit) and the host unit tests
 * compile the same smtplimit_cmd.c, so a line the admin command accepts is
 * one the kernel accepts, and a line it refuses is refused for the same
 * reason.
 *
 * A line is its bytes without the newline; a blank line (only ASCII white
 * space, see smtplimit_cmd_blank()) is no command and the caller skips it.
 * Every other line is exactly one of, with no other space anywhere:
 *
 *   -ADDR[/LEN]       forget the sources within the prefix (default: all
 *                     of ADDR)
 *   +ADDR             empty the bucket: 0 tokens, the next attempt in T
 *   +ADDR SECONDS     ban for exactly SECONDS, 1..XT_SMTPLIMIT_BAN_MAX
 *   >ADDR S[.fff]     ban until at least S seconds from now (never shortens)
 *   ~ADDR[/LEN]       lift the bans within the prefix, keeping the debt
 *   =ADDR S[.fff]     the bucket is full again no sooner than S from now
 *   /                 flush the table
 *   {                 begin a transaction
 *   }                 apply the transaction
 *
 * ADDR is an address of the table's family exactly as inet_pton(3) of
 * glibc takes it (dotted quads without leading zeros, IPv6 groups of at
 * most four hex digits, "::" for one or more zero groups, an IPv4 tail);
 * LEN and SECONDS are decimal digits; S[.fff] has one to three digits of
 * fraction, 0 < S[.fff] <= XT_SMTPLIMIT_BAN_MAX. What each command does to
 * the table is the kernel's (kernel/smtplimit_write.c).
 */
#ifndef _SMTPLIMIT_CMD_H
#define _SMTPLIMIT_CMD_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#endif

enum smtplimit_op {
	SMTPLIMIT_FORGET,		/* -ADDR[/LEN] */
	SMTPLIMIT_BAN,			/* +ADDR[ SECONDS] */
	SMTPLIMIT_BAN_AT_LEAST,		/* >ADDR S[.fff] */
	SMTPLIMIT_UNBAN,		/* ~ADDR[/LEN] */
	SMTPLIMIT_SET_FULL,		/* =ADDR S[.fff] */
	SMTPLIMIT_FLUSH,		/* / */
	SMTPLIMIT_BEGIN,		/* { */
	SMTPLIMIT_COMMIT,		/* } */
};

struct smtplimit_cmd {
	/* Network order, as written (host bits too); zero past 4 for IPv4. */
	__u8 addr[16];
	__u64 ms;		/* of a ban or a full time; 0: none ("+ADDR") */
	__u8 op;		/* enum smtplimit_op */
	__u8 len;		/* prefix length; the family's width if none */
};

/*
 * Parse the line of @len bytes at @line (no newline; it need not be
 * NUL-terminated) for a table of the family @ipv4. 0 with *@cmd filled, or
 * -EINVAL with *@why set to a short reason: "line too long", "unknown
 * command", "bad address", "prefix too long", "missing seconds", "seconds
 * out of range" or "trailing characters".
 */
int smtplimit_cmd_parse(bool ipv4, const char *line, size_t len,
			struct smtplimit_cmd *cmd, const char **why);

/* Whether the @len bytes at @line are only " \t\n\v\f\r": no command. */
bool smtplimit_cmd_blank(const char *line, size_t len);

/*
 * Whether the @len bytes at @s are an address of the family as glibc's
 * inet_pton(3) takes it; if so it is stored in @addr (4 or 16 bytes).
 */
bool smtplimit_addr_parse(bool ipv4, const char *s, size_t len, __u8 *addr);

#endif /* _SMTPLIMIT_CMD_H */
