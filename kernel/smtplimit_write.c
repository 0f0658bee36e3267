// SPDX-License-Identifier: GPL-2.0
/*
 * The write of each table's proc file (smtplimit_proc.c has the file and
 * its read): commands in the syntax of smtplimit_cmd.h that forget, ban,
 * lift, set or flush sources, parsed to a unit (a write, or a transaction
 * of many writes) and applied all or nothing, in two steps: prepare, which
 * may fail and then undoes, and commit, which cannot. The line a write left
 * unterminated and a transaction's commands are kept in the open file's
 * smtplimit_seq (smtplimit_proc.h) until the next write or the close.
 *
 * Locking: a write is parsed and given its memory before it takes the
 * table's write_mutex, which serialises the writes to one table; under it,
 * entries are changed under their own locks as smtplimit_table.h describes,
 * and the entries a unit sets are held (entry->held) until it is done. The
 * open file's write state is under its smtplimit_seq.write_lock, taken for
 * the whole write before the table's write_mutex. Writes run in process
 * context and may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "smtplimit_cmd.h"
#include "smtplimit_proc.h"
#include "smtplimit_table.h"

/* The write: parsing */

/*
 * One command a line, in the syntax of smtplimit_cmd.h (its one home, shared
 * with the admin command). A unit of commands (a write, or a transaction) is
 * parsed and validated whole before anything is applied.
 */

static bool smtplimit_creates(const struct smtplimit_cmd *cmd)
{
	return cmd->op == SMTPLIMIT_BAN || cmd->op == SMTPLIMIT_BAN_AT_LEAST ||
	       cmd->op == SMTPLIMIT_SET_FULL;
}

/* @addr masked to the table's srcmask: the key of the entry holding it. */
static void smtplimit_cmd_key(const struct smtplimit_table *t,
			      const struct smtplimit_cmd *cmd,
			      union smtplimit_addr *key)
{
	union smtplimit_addr addr = {};
	unsigned int i;

	memcpy(&addr, cmd->addr, sizeof(cmd->addr));
	for (i = 0; i < (smtplimit_is_ipv4(t) ? 1 : 4); i++)
		key->ip6.s6_addr32[i] = addr.ip6.s6_addr32[i] &
					t->mask.ip6.s6_addr32[i];
}

/* The prefix of @cmd as a key and a mask, for a sweep or a walk. */
static void smtplimit_cmd_prefix(const struct smtplimit_cmd *cmd,
				 union smtplimit_addr *key,
				 union smtplimit_addr *mask)
{
	unsigned int i;

	memset(mask, 0, sizeof(*mask));
	smtplimit_prefix_mask(cmd->len, 4, mask->ip6.s6_addr32);
	memcpy(key, cmd->addr, sizeof(cmd->addr));
	for (i = 0; i < 4; i++)
		key->ip6.s6_addr32[i] &= mask->ip6.s6_addr32[i];
}

/* IPv4 entries have no IPv6 tail: compare the table's words only. */
static bool smtplimit_within(const struct smtplimit_table *t,
			     const union smtplimit_addr *addr,
			     const union smtplimit_addr *key,
			     const union smtplimit_addr *mask)
{
	unsigned int i;

	for (i = 0; i < (smtplimit_is_ipv4(t) ? 1 : 4); i++)
		if ((addr->ip6.s6_addr32[i] & mask->ip6.s6_addr32[i]) !=
		    key->ip6.s6_addr32[i])
			return false;
	return true;
}

/* The write: applying, all or nothing */

/*
 * A unit (a write, or a transaction's writes) is applied in two steps under
 * the table's write_mutex, so that a unit refused with ENOSPC or ENOMEM has
 * changed nothing:
 *
 * 1. Prepare: every source that a command of the unit sets ("+", ">", "=")
 *    gets an entry and is held. A source tracked already is held as it is;
 *    one not tracked gets a new entry with a full bucket, which is the same
 *    as no entry at all, in a place taken for it (evicting an entry no ban
 *    holds if the table is full) from memory allocated before the mutex.
 *    Whether the places can all be had is asked before any is taken. A held
 *    entry is never unhashed, by GC, eviction, a sweep or a forget (see
 *    smtplimit_entry_kill()), so the entries stay until step 2 is done. Only
 *    this step can fail: its undo lets the entries go, unhashes the new ones
 *    still full, and gives their places back.
 * 2. Commit: the commands in order, none of which can fail. A forget or a
 *    flush that meets a held entry resets it to a full bucket with no
 *    counts, no ban, instead of unhashing it: that is the same as
 *    forgetting the source, and a later command of the unit sets it again.
 *    Then the entries are let go; one left full is collected by the GC.
 *
 * What a refused unit may leave: the sources evicted to make room for it,
 * when an insert then fails for memory (the table could not grow) or a
 * packet took a place the count had promised. Never a ban; never a change
 * to a source the unit names.
 */

struct smtplimit_hold {
	struct smtplimit_entry *e;
	bool fresh;			/* inserted by the prepare */
};

struct smtplimit_apply {
	struct smtplimit_table *t;
	struct smtplimit_bucket bucket;
	u64 now;
	struct smtplimit_hold *holds;	/* one per command that sets */
	unsigned int nholds;
};

/* Hold the live entry of @key, if there is one. Under RCU. */
static struct smtplimit_entry *smtplimit_hold_live(struct smtplimit_table *t,
						   const union smtplimit_addr *key)
{
	struct smtplimit_entry *e = smtplimit_lookup_live(t, key);
	bool live;

	if (!e)
		return NULL;
	spin_lock_bh(&e->lock);
	live = !e->dead;
	if (live)
		e->held = true;
	spin_unlock_bh(&e->lock);
	return live ? e : NULL;
}

/* Let the held entries go; @undo: unhash the new ones still full. */
static void smtplimit_unhold(struct smtplimit_apply *a, bool undo)
{
	struct smtplimit_table *t = a->t;
	unsigned int i;

	for (i = 0; i < a->nholds; i++) {
		struct smtplimit_entry *e = a->holds[i].e;

		if (!e)
			continue;
		spin_lock_bh(&e->lock);
		e->held = false;
		spin_unlock_bh(&e->lock);
		if (undo && a->holds[i].fresh &&
		    smtplimit_entry_kill(t, e, a->now, SMTPLIMIT_KILL_FULL)) {
			smtplimit_place_release(t);
			this_cpu_dec(t->stats->created);
		}
	}
}

/*
 * Step 1: hold an entry for each command that sets a source, from @spares
 * (one per such command) for the sources not tracked. 0, -ENOSPC or
 * -ENOMEM; on an error the caller undoes. Called without RCU held.
 */
static int smtplimit_prepare(struct smtplimit_apply *a,
			     const struct smtplimit_cmd *cmds, unsigned int n,
			     struct smtplimit_entry **spares)
{
	struct smtplimit_entry *e, *fresh;
	struct smtplimit_table *t = a->t;
	unsigned int i, k, need = 0;
	union smtplimit_addr key;
	bool tracked;

	for (i = 0; i < n; i++) {
		if (!smtplimit_creates(&cmds[i]))
			continue;
		smtplimit_cmd_key(t, &cmds[i], &key);
		rcu_read_lock();
		tracked = smtplimit_lookup_live(t, &key);
		rcu_read_unlock();
		need += !tracked;
	}
	/* Asked first, so that a unit refused for room has evicted nothing. */
	if (!smtplimit_places_available(t, need, a->now))
		return -ENOSPC;

	for (i = 0, k = 0; i < n; i++) {
		if (!smtplimit_creates(&cmds[i]))
			continue;
		smtplimit_cmd_key(t, &cmds[i], &key);
		for (;;) {
			rcu_read_lock();
			e = smtplimit_hold_live(t, &key);
			rcu_read_unlock();
			if (e)
				break;
			/* *spares is NULL once spent on an insert that lost a race. */
			if (!spares[k])
				spares[k] = smtplimit_entry_alloc(t, GFP_KERNEL);
			if (!spares[k])
				return -ENOMEM;
			if (!smtplimit_place_take_sleeping_walk(t, a->now))
				return -ENOSPC;
			fresh = spares[k];
			spares[k] = NULL;
			fresh->held = true;
			e = smtplimit_entry_insert(t, fresh, &key, a->now, false);
			if (!e)
				return -ENOMEM;
			if (e == fresh) {
				a->holds[k].fresh = true;
				break;
			}
			/* A packet's entry came first: hold it, as above. */
			cond_resched();
		}
		a->holds[k++].e = e;
	}
	return 0;
}

/* Forget @e: reset it if held (see above), else unhash it. How many went. */
static unsigned int smtplimit_forget_entry(struct smtplimit_apply *a,
					   struct smtplimit_entry *e)
{
	bool held, was = false;

	spin_lock_bh(&e->lock);
	held = e->held && !e->dead;
	if (held) {
		was = !smtplimit_is_full(e->tat, a->now) || e->banned;
		e->tat = a->now;
		e->passed = 0;
		e->denied = 0;
		e->banned = false;
	}
	spin_unlock_bh(&e->lock);
	if (held)
		return was;
	if (!smtplimit_entry_kill(a->t, e, a->now, SMTPLIMIT_KILL_ANY))
		return 0;
	smtplimit_place_release(a->t);
	return 1;
}

/* "-ADDR[/LEN]" and "/" (@cmd NULL): unhash, or reset the held. */
static unsigned int smtplimit_commit_forget(struct smtplimit_apply *a,
					    const struct smtplimit_cmd *cmd)
{
	union smtplimit_addr key = {}, mask = {};
	struct smtplimit_sweep within = { .now = a->now, .owing_too = true };
	struct smtplimit_table *t = a->t;
	struct smtplimit_entry *e;
	unsigned int i, gone = 0;

	if (cmd && cmd->len >= t->srcmask) {
		/* At most one entry holds the address. */
		smtplimit_cmd_key(t, cmd, &key);
		rcu_read_lock();
		e = smtplimit_lookup(t, &key);
		if (e)
			gone = smtplimit_forget_entry(a, e);
		rcu_read_unlock();
		return gone;
	}
	if (cmd) {
		smtplimit_cmd_prefix(cmd, &key, &mask);
		within.prefix = &key;
		within.mask = &mask;
	}
	/* The sweep passes the held entries by: reset them here. */
	gone = smtplimit_sweep(t, &within);
	for (i = 0; i < a->nholds; i++) {
		e = a->holds[i].e;
		if (!cmd || smtplimit_within(t, &e->addr, &key, &mask))
			gone += smtplimit_forget_entry(a, e);
	}
	return gone;
}

struct smtplimit_lift_walk {
	struct smtplimit_apply *a;
	union smtplimit_addr key, mask;
};

static void smtplimit_lift_entry(struct smtplimit_apply *a,
				 struct smtplimit_entry *e)
{
	spin_lock_bh(&e->lock);
	if (!e->dead && e->banned) {
		e->tat = smtplimit_lift(e->tat, a->now, &a->bucket);
		e->banned = false;
	}
	spin_unlock_bh(&e->lock);
}

static bool smtplimit_lift_visit(struct smtplimit_table *t,
				 struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_lift_walk *lw = arg;

	if (smtplimit_within(t, &e->addr, &lw->key, &lw->mask))
		smtplimit_lift_entry(lw->a, e);
	return true;
}

/* "~ADDR[/LEN]": lift the bans within the prefix, keeping the debt. */
static void smtplimit_commit_unban(struct smtplimit_apply *a,
				   const struct smtplimit_cmd *cmd)
{
	struct smtplimit_lift_walk lw = { .a = a };
	struct smtplimit_table *t = a->t;
	struct smtplimit_entry *e;

	if (cmd->len >= t->srcmask) {
		smtplimit_cmd_key(t, cmd, &lw.key);
		rcu_read_lock();
		e = smtplimit_lookup_live(t, &lw.key);
		if (e)
			smtplimit_lift_entry(a, e);
		rcu_read_unlock();
		return;
	}
	smtplimit_cmd_prefix(cmd, &lw.key, &lw.mask);
	smtplimit_walk(t, smtplimit_lift_visit, &lw);
}

/* "+ADDR[ S]", ">ADDR S", "=ADDR S" on the held entry @e. */
static void smtplimit_commit_set(struct smtplimit_apply *a,
				 const struct smtplimit_cmd *cmd,
				 struct smtplimit_entry *e)
{
	u64 target;

	spin_lock_bh(&e->lock);
	switch (cmd->op) {
	case SMTPLIMIT_BAN:
		e->tat = smtplimit_ban(a->now, &a->bucket, &smtplimit_clock,
				       div_u64(cmd->ms, 1000));
		e->banned = cmd->ms != 0;
		break;
	case SMTPLIMIT_BAN_AT_LEAST:
		target = smtplimit_ban_at_least(e->tat, a->now, &a->bucket,
						&smtplimit_clock, cmd->ms);
		if (SMTPLIMIT_MUTANT_IS(12))
			target = smtplimit_ban_at_least(a->now, a->now, &a->bucket,
							&smtplimit_clock,
							cmd->ms);
		e->tat = target;
		e->banned = true;
		break;
	default:
		e->tat = smtplimit_set_full(e->tat, a->now, &a->bucket,
					    &smtplimit_clock, cmd->ms);
		break;
	}
	spin_unlock_bh(&e->lock);
	if (cmd->op != SMTPLIMIT_SET_FULL)
		this_cpu_inc(a->t->stats->banned);
}

/* Step 2: the commands in order; nothing here fails. */
static void smtplimit_commit(struct smtplimit_apply *a,
			     const struct smtplimit_cmd *cmds, unsigned int n)
{
	struct smtplimit_table *t = a->t;
	unsigned int i, k = 0;

	for (i = 0; i < n; i++) {
		switch (cmds[i].op) {
		case SMTPLIMIT_FLUSH:
			this_cpu_add(t->stats->forgotten,
				     smtplimit_commit_forget(a, NULL));
			this_cpu_inc(t->stats->flushes);
			break;
		case SMTPLIMIT_FORGET:
			this_cpu_add(t->stats->forgotten,
				     smtplimit_commit_forget(a, &cmds[i]));
			break;
		case SMTPLIMIT_UNBAN:
			smtplimit_commit_unban(a, &cmds[i]);
			break;
		default:
			smtplimit_commit_set(a, &cmds[i], a->holds[k++].e);
			break;
		}
		cond_resched();
	}
}

/*
 * Apply the @n commands at @cmds (no "{" or "}" among them) all or nothing:
 * 0, -ENOSPC (the table is full of bans) or -ENOMEM, having changed nothing.
 */
static int smtplimit_apply_unit(struct smtplimit_table *t,
				const struct smtplimit_cmd *cmds, unsigned int n)
{
	struct smtplimit_entry **spares = NULL;
	struct smtplimit_apply a = { .t = t };
	unsigned int i, sets = 0;
	int err = -ENOMEM;

	for (i = 0; i < n; i++)
		sets += smtplimit_creates(&cmds[i]);
	spares = kvcalloc(sets, sizeof(*spares), GFP_KERNEL_ACCOUNT);
	a.holds = kvcalloc(sets, sizeof(*a.holds), GFP_KERNEL_ACCOUNT);
	if (!spares || !a.holds)
		goto out;
	for (i = 0; i < sets; i++) {
		spares[i] = smtplimit_entry_alloc(t, GFP_KERNEL);
		if (!spares[i])
			goto out;
	}
	a.nholds = sets;

	mutex_lock(&t->write_mutex);
	a.now = smtplimit_now();
	smtplimit_table_rate(t, &a.bucket);
	err = smtplimit_prepare(&a, cmds, n, spares);
	if (!err)
		smtplimit_commit(&a, cmds, n);
	smtplimit_unhold(&a, err);
	mutex_unlock(&t->write_mutex);
out:
	for (i = 0; spares && i < sets; i++)
		if (spares[i])
			smtplimit_entry_free_unused(t, spares[i]);
	kvfree(spares);
	kvfree(a.holds);
	return err;
}

/* The write: lines across writes, transactions */

/*
 * A line is a command once its newline has come. `cat list > FILE` writes
 * chunks of 128 KiB that end mid-line, and a cut line applied alone would be
 * another command ("-198.51.100.0/2" for "-198.51.100.0/24") or a bad line.
 * So what a write leaves after its last newline is kept in the open file, at
 * most one line, and the next write on that file begins with it: the line
 * limit holds for the joined line. Each write is parsed and applied whole, the
 * lines it completes, or refused whole; its return counts every byte it took,
 * the kept ones too. A refused write drops the kept line and every later
 * write on the file is refused with EIO: a chunk after a refused one begins
 * mid-line, and cat stops at the first refusal anyway.
 *
 * A blank kept line longer than the limit is kept as its first
 * XT_SMTPLIMIT_LINE_MAX bytes: joined to more blanks it stays a blank line,
 * joined to anything else it is refused for its leading space, whatever its
 * length.
 *
 * A transaction makes one unit of many writes: from the write holding "{"
 * to the one holding "}", every command is checked as it comes and held in
 * the open file's s->cmds (at most XT_SMTPLIMIT_TXN_MAX, charged to the
 * writer's memory cgroup), and the write that closes it applies them all,
 * with the rest of its own lines, as one unit. A bad line, a refused write
 * or the close of the file before "}" drops them, none applied, and counts
 * the transaction in the header's aborted.
 */

/* Append the complete lines of @buf (NUL-ended, no other NUL) to s->cmds. */
static int smtplimit_parse_write(const struct smtplimit_table *t,
				 struct smtplimit_seq *s, char *buf)
{
	struct smtplimit_cmd cmd;
	char *line, *next;
	const char *why;
	size_t len;

	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		len = next ? next - line : strlen(line);
		if (next)
			next++;
		if (smtplimit_cmd_blank(line, len))
			continue;
		if (smtplimit_cmd_parse(smtplimit_is_ipv4(t), line, len, &cmd,
					&why))
			return -EINVAL;
		if (cmd.op == SMTPLIMIT_BEGIN || cmd.op == SMTPLIMIT_COMMIT) {
			/* Nested "{", or "}" without "{", is a bad line. */
			bool begin = cmd.op == SMTPLIMIT_BEGIN;

			if (s->in_txn == begin)
				return -EINVAL;
			s->in_txn = begin;
			s->txn_seen |= s->in_txn;
			continue;
		}
		if (s->ncmds == s->room)
			return -E2BIG;		/* see smtplimit_cmds_room() */
		s->cmds[s->ncmds++] = cmd;
	}
	return 0;
}

/* Room in s->cmds for @lines more commands; -E2BIG past a transaction's most. */
static int smtplimit_cmds_room(struct smtplimit_seq *s, size_t lines)
{
	struct smtplimit_cmd *cmds;
	size_t room;

	if (s->ncmds + lines <= s->room)
		return 0;
	if (s->ncmds + lines > XT_SMTPLIMIT_TXN_MAX + XT_SMTPLIMIT_WRITE_MAX / 2)
		return -E2BIG;
	room = max_t(size_t, s->ncmds + lines, 2 * s->room);
	room = min_t(size_t, room, XT_SMTPLIMIT_TXN_MAX + XT_SMTPLIMIT_WRITE_MAX / 2);
	cmds = kvmalloc_array(room, sizeof(*cmds), GFP_KERNEL_ACCOUNT);
	if (!cmds)
		return -ENOMEM;
	if (s->ncmds)
		memcpy(cmds, s->cmds, s->ncmds * sizeof(*cmds));
	kvfree(s->cmds);
	s->cmds = cmds;
	s->room = room;
	return 0;
}

/* Drop the commands held; a transaction among them counts as aborted. */
static void smtplimit_cmds_drop(struct smtplimit_table *t,
				struct smtplimit_seq *s)
{
	if (s->txn_seen)
		this_cpu_inc(t->stats->aborted);
	s->txn_seen = false;
	s->in_txn = false;
	s->ncmds = 0;
	kvfree(s->cmds);
	s->cmds = NULL;
	s->room = 0;
}

static ssize_t smtplimit_write_lines(struct smtplimit_table *t,
				     struct smtplimit_seq *s,
				     const char __user *input, size_t size)
{
	size_t len, held = s->tail_len, end, lines;
	char *buf, *nl, *p;
	int err;

	if (size > XT_SMTPLIMIT_WRITE_MAX)
		return -EINVAL;
	len = held + size;
	buf = kvmalloc(len + 1, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, s->tail, held);
	err = -EFAULT;
	if (copy_from_user(buf + held, input, size))
		goto out;
	buf[len] = '\0';
	err = -EINVAL;
	if (memchr(buf + held, '\0', size))
		goto out;

	/* The complete lines end at the last newline; the rest is kept. */
	nl = strrchr(buf, '\n');
	end = nl ? nl + 1 - buf : 0;
	if (SMTPLIMIT_MUTANT_IS(9))
		end = len;
	if (len - end > XT_SMTPLIMIT_LINE_MAX &&
	    !smtplimit_cmd_blank(buf + end, len - end))
		goto out;
	s->tail_len = min_t(size_t, len - end, XT_SMTPLIMIT_LINE_MAX);
	memcpy(s->tail, buf + end, s->tail_len);
	buf[end] = '\0';

	/* At most one command a line; a mutant's last line has no newline. */
	for (lines = 1, p = buf; (p = strchr(p, '\n')); p++)
		lines++;
	err = smtplimit_cmds_room(s, lines);
	if (!err)
		err = smtplimit_parse_write(t, s, buf);
	if (!err && s->in_txn && s->ncmds > XT_SMTPLIMIT_TXN_MAX)
		err = -E2BIG;
	if (err && SMTPLIMIT_MUTANT_IS(5) && s->ncmds)
		smtplimit_apply_unit(t, s->cmds, 1);
	if (err || s->in_txn)
		goto out;
	err = smtplimit_apply_unit(t, s->cmds, s->ncmds);
	s->txn_seen = false;		/* applied, or refused: not aborted */
	smtplimit_cmds_drop(t, s);
out:
	kvfree(buf);
	return err ? err : size;
}

ssize_t smtplimit_proc_write(struct file *file, const char __user *input,
			     size_t size, loff_t *loff)
{
	struct smtplimit_table *t = pde_data(file_inode(file));
	struct seq_file *m = file->private_data;
	struct smtplimit_seq *s = m->private;
	ssize_t ret;

	if (!file_ns_capable(file, t->net->user_ns, CAP_NET_ADMIN))
		return -EPERM;
	if (mutex_lock_killable(&s->write_lock))
		return -EINTR;
	ret = -EIO;
	if (!s->refused) {
		ret = smtplimit_write_lines(t, s, input, size);
		if (ret < 0) {
			s->refused = true;
			s->tail_len = 0;
			smtplimit_cmds_drop(t, s);
		}
	}
	mutex_unlock(&s->write_lock);
	/*
	 * Whatever it did, a reader reaching position 0 after this write
	 * returns takes a new copy. Fully ordered: a build that reads the new
	 * value sees what the write changed. (19, a mutant, leaves readers
	 * the copy from before.)
	 */
	if (!SMTPLIMIT_MUTANT_IS(19))
		atomic_inc_return(&t->snap_gen);
	return ret;
}

/*
 * At close: a line still without its newline is dropped, counted and
 * logged; so is a transaction still open (13, a mutant, applies it).
 */
void smtplimit_write_release(struct smtplimit_table *t,
			     struct smtplimit_seq *s)
{
	if (!smtplimit_cmd_blank(s->tail, s->tail_len)) {
		this_cpu_inc(t->stats->cut);
		pr_warn_ratelimited("%s_smtplimit/%s: a write's last line had no newline at close, dropped: \"%*pE\"\n",
				    smtplimit_is_ipv4(t) ? "ipt" : "ip6t",
				    t->name, s->tail_len, s->tail);
	}
	if (s->in_txn) {
		pr_warn_ratelimited("%s_smtplimit/%s: a transaction was not closed by \"}\" at close, dropped: %zu commands\n",
				    smtplimit_is_ipv4(t) ? "ipt" : "ip6t",
				    t->name, s->ncmds);
		if (SMTPLIMIT_MUTANT_IS(13))
			smtplimit_apply_unit(t, s->cmds, s->ncmds);
	}
	smtplimit_cmds_drop(t, s);
}
