/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Private to the proc file: the state of one open file, shared by its read
 * side (smtplimit_proc.c: open, release, the read) and its write side
 * (smtplimit_write.c: the commands), and what the one calls of the other.
 *
 * Locking: the read fields (snap) belong to the seq_file, whose own lock
 * serialises a file's reads; the write fields are under write_lock, taken for
 * a whole write before the table's write_mutex (smtplimit_table.h). Open and
 * release run alone on the file.
 */
#ifndef _SMTPLIMIT_PROC_H
#define _SMTPLIMIT_PROC_H

#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/netfilter/xt_smtplimit.h>

#include "smtplimit_cmd.h"
#include "smtplimit_table.h"

/* An open proc file's seq_file private data. */
struct smtplimit_seq {
	struct smtplimit_table *table;
	struct smtplimit_snap *snap;	/* the copy being read, or NULL */
	/* The write side: see "The write: lines across writes" in smtplimit_write.c. */
	struct mutex write_lock;	/* one write of this open file at a time */
	bool refused;			/* a write was refused: no more */
	u8 tail_len;
	char tail[XT_SMTPLIMIT_LINE_MAX];	/* the unterminated last line */
	bool in_txn;			/* after "{", before "}" */
	bool txn_seen;			/* cmds hold a transaction's */
	struct smtplimit_cmd *cmds;	/* the unit being parsed or held */
	size_t ncmds;
	size_t room;
};

/* In smtplimit_write.c: the proc file's write. */
ssize_t smtplimit_proc_write(struct file *file, const char __user *input,
			     size_t size, loff_t *loff);
/*
 * In smtplimit_write.c: at close, drop what the file's writes left, an
 * unterminated line and a transaction not closed, counting and logging them.
 */
void smtplimit_write_release(struct smtplimit_table *t,
			     struct smtplimit_seq *s);

#endif /* _SMTPLIMIT_PROC_H */
