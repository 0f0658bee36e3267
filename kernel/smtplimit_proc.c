// SPDX-License-Identifier: GPL-2.0
/*
 * The proc file of each table, /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name>: the read, a sorted copy of the live
 * entries shared by the table's readers, and the write, commands
 * (smtplimit_cmd.h) that forget, ban, lift, set or flush sources, a write or
 * a transaction at a time, all or nothing.
 *
 * Locking: a read takes no lock over the entries: it walks the table under
 * RCU (smtplimit_walk()) and takes each entry's lock to copy it. The table's
 * snap_mutex guards its cached copy and is held while one is built, so that
 * readers arriving meanwhile wait for it and share it; each copy is
 * refcounted (its readers and the cache) and freed at the last put. A write is
 * parsed and given its memory before it takes the table's write_mutex, which
 * serialises the writes to one table; under it, entries are changed under
 * their own locks as smtplimit_table.h describes, and the entries a unit
 * sets are held (entry->held) until it is done. The line a write left
 * unterminated and a transaction's commands are kept in the open file's
 * smtplimit_seq under its write_lock, taken for the whole write before the
 * table's write_mutex. Both run in process context and may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/inet.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>

#include "compat.h"
#include "smtplimit_cmd.h"
#include "smtplimit_table.h"

/* The read */

/*
 * One file per table. Reading position 0 takes a reference on a copy of the
 * live entries sorted by address, with the header's figures, and the read
 * lists that copy: each source once, all figures against one now, however
 * slowly the reader goes. The copy is not atomic: an entry created while the
 * copy is taken may be in it, an entry freed meanwhile may still be.
 *
 * An rhashtable walk meets every entry present throughout at least once,
 * some twice: it starts over from the first bucket when the table is
 * resized under it, and a walk stopped to reschedule next to an entry that
 * is then unlinked may meet a neighbour again. Listing straight from the walk
 * would show those sources twice; the copy keeps everything the walk met
 * (starting it over would lose entries not yet moved to the new table),
 * and the sort puts each repeat next to its twin, to be dropped.
 *
 * The readers of a table share its copies, so that opening the file many
 * times and reading a byte from each pins one copy, not one per file. The
 * table caches its newest copy (t->snap); a reader reaching position 0 shares
 * it while it is younger than proc_snapshot_ms and no proc write has
 * completed since it was taken (t->snap_gen), else builds a new one that
 * replaces it. A reader with CAP_NET_ADMIN over the table's netns (who may
 * write it) shares a young copy only if the header's counters, rate and
 * maximum are unchanged too, so that what its packets did shows at once.
 * Without CAP_NET_ADMIN, a reader builds no copy while two are held (one
 * replaced, still being read): it shares the newest, however old. So
 * readers without the capability hold at most two copies of a table, those
 * with it one each at most every proc_snapshot_ms of change. A copy is
 * charged to the memory cgroup of the reader that built it, and freed when
 * the last of its readers is done and a newer one replaced it.
 */

struct smtplimit_row {
	union smtplimit_addr addr;	/* zero past the table's key length */
	u64 tat;
	u32 passed;
	u32 denied;
	bool ban;			/* a ban holds it */
};

/* A copy of the table for its readers: header and rows of one moment. */
struct smtplimit_snap {
	struct kref ref;		/* t->snap's, and each reader's */
	struct smtplimit_table *table;
	unsigned long built;		/* jiffies when its build ended */
	int gen;			/* t->snap_gen before the copy */
	struct smtplimit_stats sum;	/* the header's counters */
	u64 now;			/* the moment the rows were copied */
	struct smtplimit_bucket bucket;	/* the header's rate and burst */
	u32 rate;
	u32 max;
	u32 live;			/* the header's count of entries */
	u32 nrows;
	struct smtplimit_row *rows;	/* sorted, no address twice */
};

struct smtplimit_seq {
	struct smtplimit_table *table;
	struct smtplimit_snap *snap;	/* the copy being read, or NULL */
	/* The write side: see "The write: lines across writes" below. */
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

static void smtplimit_snap_release(struct kref *ref)
{
	struct smtplimit_snap *snap = container_of(ref, struct smtplimit_snap,
						   ref);

	atomic_dec(&snap->table->snaps);
	kvfree(snap->rows);
	kfree(snap);
}

/* Gives the copy back; the next read of position 0 takes one again. */
static void smtplimit_seq_free(struct smtplimit_seq *s)
{
	if (s->snap)
		kref_put(&s->snap->ref, smtplimit_snap_release);
	s->snap = NULL;
}

void smtplimit_proc_table_exit(struct smtplimit_table *t)
{
	mutex_lock(&t->snap_mutex);
	if (t->snap)
		kref_put(&t->snap->ref, smtplimit_snap_release);
	t->snap = NULL;
	mutex_unlock(&t->snap_mutex);
}

static int smtplimit_row_cmp(const struct smtplimit_row *a,
			     const struct smtplimit_row *b)
{
	return memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

/* Rows between reschedule points of the sort and the dedup. */
#define SMTPLIMIT_SORT_BATCH 4096

static void smtplimit_sift_down(struct smtplimit_row *rows, u32 root, u32 n)
{
	u32 child;

	while ((child = 2 * root + 1) < n) {
		if (child + 1 < n &&
		    smtplimit_row_cmp(&rows[child], &rows[child + 1]) < 0)
			child++;
		if (smtplimit_row_cmp(&rows[root], &rows[child]) >= 0)
			return;
		swap(rows[root], rows[child]);
		root = child;
	}
}

/*
 * Heapsort, in place like the kernel's sort(), which never reschedules: a
 * million rows on one CPU would hold it for seconds (soft lockup, RCU stall).
 * Each sift-down is O(log n), so a batch of them is short.
 */
static void smtplimit_rows_sort(struct smtplimit_row *rows, u32 n)
{
	u32 i, done = 0;

	for (i = n / 2; i-- > 0;) {
		smtplimit_sift_down(rows, i, n);
		if (++done % SMTPLIMIT_SORT_BATCH == 0)
			cond_resched();
	}
	for (i = n; i-- > 1;) {
		swap(rows[0], rows[i]);
		smtplimit_sift_down(rows, 0, i);
		if (++done % SMTPLIMIT_SORT_BATCH == 0)
			cond_resched();
	}
}

/*
 * The entries neither full nor dead at @now, copied into @rows. More than
 * @room of them means entries were created faster than the walk went, or a
 * resize made it meet them twice.
 */
struct smtplimit_copy {
	struct smtplimit_row *rows;
	u32 room;
	u32 n;				/* rows filled */
	u64 now;
	bool overflow;			/* met more than @room */
};

static bool smtplimit_copy_visit(struct smtplimit_table *t,
				 struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_copy *c = arg;
	struct smtplimit_row *row;

	spin_lock_bh(&e->lock);
	if (!e->dead && !smtplimit_is_full(e->tat, c->now)) {
		if (c->n == c->room) {
			c->overflow = true;
		} else {
			row = &c->rows[c->n++];
			memset(&row->addr, 0, sizeof(row->addr));
			memcpy(&row->addr, &e->addr, t->ht.p.key_len);
			row->tat = e->tat;
			row->passed = e->passed;
			row->denied = e->denied;
			row->ban = e->banned &&
				   smtplimit_debt(e->tat, c->now) >
				   READ_ONCE(t->tolerance);
		}
	}
	spin_unlock_bh(&e->lock);
	return !c->overflow;
}

static void smtplimit_stats_sum(struct smtplimit_table *t,
				struct smtplimit_stats *sum)
{
	int cpu;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct smtplimit_stats *st = per_cpu_ptr(t->stats, cpu);

		sum->passed += READ_ONCE(st->passed);
		sum->denied += READ_ONCE(st->denied);
		sum->evicted += READ_ONCE(st->evicted);
		sum->untracked += READ_ONCE(st->untracked);
		sum->created += READ_ONCE(st->created);
		sum->gc_freed += READ_ONCE(st->gc_freed);
		sum->forgotten += READ_ONCE(st->forgotten);
		sum->banned += READ_ONCE(st->banned);
		sum->flushes += READ_ONCE(st->flushes);
		sum->cut += READ_ONCE(st->cut);
		sum->aborted += READ_ONCE(st->aborted);
	}
}

/* A new copy of @t: the header's figures and the rows, all from one now. */
static struct smtplimit_snap *smtplimit_snap_build(struct smtplimit_table *t,
						   int gen)
{
	struct smtplimit_copy c = {};
	struct smtplimit_snap *snap;
	struct smtplimit_row *rows;
	int err = -ENOMEM;
	u32 i, n;

	snap = kzalloc(sizeof(*snap), GFP_KERNEL_ACCOUNT);
	if (!snap)
		return ERR_PTR(-ENOMEM);
	kref_init(&snap->ref);
	snap->table = t;
	snap->gen = gen;
	snap->now = smtplimit_now();
	smtplimit_stats_sum(t, &snap->sum);
	snap->rate = smtplimit_table_rate(t, &snap->bucket);
	snap->max = READ_ONCE(t->max);

	/* Live entries hold places, so count bounds them but for a race. */
	c.room = atomic_read(&t->count);
	c.room += c.room / 8 + 64;
	c.now = snap->now;
	for (;;) {
		c.rows = kvmalloc_array(c.room, sizeof(*c.rows),
					GFP_KERNEL_ACCOUNT);
		if (!c.rows)
			goto fail;
		c.n = 0;
		c.overflow = false;
		smtplimit_walk(t, smtplimit_copy_visit, &c);
		if (!c.overflow)
			break;
		kvfree(c.rows);
		err = -EBUSY;	/* the table would not hold still */
		if (c.room > XT_SMTPLIMIT_HTABLE_MAX_LIMIT)
			goto fail;
		c.room *= 2;
	}

	rows = c.rows;
	smtplimit_rows_sort(rows, c.n);
	for (i = 0, n = 0; i < c.n; i++) {
		if (n == 0 || smtplimit_row_cmp(&rows[n - 1], &rows[i]))
			rows[n++] = rows[i];
		if (i % SMTPLIMIT_SORT_BATCH == SMTPLIMIT_SORT_BATCH - 1)
			cond_resched();
	}
	snap->rows = rows;
	snap->nrows = n;
	/*
	 * A source evicted while the copy went on may be listed with the one
	 * that took its place; the table never held more than its places.
	 */
	snap->live = min_t(u32, n, atomic_read(&t->count));
	/* Its life runs from here: a build may outlast proc_snapshot_ms. */
	snap->built = jiffies;
	atomic_inc(&t->snaps);
	return snap;

fail:
	kfree(snap);
	return ERR_PTR(err);
}

/* Whether a reader, @admin or not, may share @snap: see "The read". */
static bool smtplimit_snap_fresh(struct smtplimit_table *t,
				 const struct smtplimit_snap *snap, int gen,
				 bool admin)
{
	unsigned long life = msecs_to_jiffies(READ_ONCE(smtplimit_proc_snapshot_ms));
	struct smtplimit_bucket bucket;
	struct smtplimit_stats sum;

	if (SMTPLIMIT_MUTANT_IS(15))
		return false;
	if (snap->gen != gen || !time_before(jiffies, snap->built + life))
		return false;
	if (!admin)
		return true;
	smtplimit_stats_sum(t, &sum);
	return !memcmp(&sum, &snap->sum, sizeof(sum)) &&
	       smtplimit_table_rate(t, &bucket) == snap->rate &&
	       bucket.burst == snap->bucket.burst &&
	       bucket.strict == snap->bucket.strict &&
	       READ_ONCE(t->max) == snap->max;
}

/* Copies a reader without CAP_NET_ADMIN may make the table hold. */
#define SMTPLIMIT_SNAPS_SHARED 2

/* A reference on the copy the reader reaching position 0 lists. */
static struct smtplimit_snap *smtplimit_snap_get(struct smtplimit_table *t,
						 bool admin)
{
	struct smtplimit_snap *snap;
	int gen;

	if (mutex_lock_killable(&t->snap_mutex))
		return ERR_PTR(-EINTR);
	/* Pairs with the write's atomic_inc_return(): the copy sees it. */
	gen = atomic_read_acquire(&t->snap_gen);
	snap = t->snap;
	if (!snap || !(smtplimit_snap_fresh(t, snap, gen, admin) ||
		       (!admin && !SMTPLIMIT_MUTANT_IS(15) &&
			atomic_read(&t->snaps) >= SMTPLIMIT_SNAPS_SHARED))) {
		snap = smtplimit_snap_build(t, gen);
		if (IS_ERR(snap))
			goto out;
		if (t->snap)
			kref_put(&t->snap->ref, smtplimit_snap_release);
		t->snap = snap;
	}
	kref_get(&snap->ref);
out:
	mutex_unlock(&t->snap_mutex);
	return snap;
}

static void *smtplimit_seq_start(struct seq_file *m, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;
	struct smtplimit_table *t = s->table;
	struct smtplimit_snap *snap;

	if (*pos == 0) {
		smtplimit_seq_free(s);
		snap = smtplimit_snap_get(t, file_ns_capable(m->file,
							     t->net->user_ns,
							     CAP_NET_ADMIN));
		if (IS_ERR(snap))
			return snap;
		s->snap = snap;
		return SEQ_START_TOKEN;
	}
	if (s->snap && *pos <= s->snap->nrows)
		return &s->snap->rows[*pos - 1];
	smtplimit_seq_free(s);	/* the end */
	return NULL;
}

static void *smtplimit_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;

	++*pos;
	return *pos <= s->snap->nrows ? &s->snap->rows[*pos - 1] : NULL;
}

static void smtplimit_seq_stop(struct seq_file *m, void *v)
{
}

static void smtplimit_seq_header(struct seq_file *m,
				 const struct smtplimit_snap *snap)
{
	const struct smtplimit_stats *sum = &snap->sum;
	struct smtplimit_table *t = snap->table;
	const char *unit;
	u32 count;

	unit = smtplimit_rate_split(snap->rate, &count);
	seq_printf(m, "# %s: rate %u/%s burst %u srcmask %u entries %u/%u",
		   t->name, count, unit, snap->bucket.burst, t->srcmask,
		   snap->live, snap->max);
	seq_printf(m, " passed %llu denied %llu evicted %llu untracked %llu",
		   sum->passed, sum->denied, sum->evicted, sum->untracked);
	seq_printf(m, " strict %s created %llu gc_freed %llu forgotten %llu banned %llu flushes %llu",
		   snap->bucket.strict ? "yes" : "no", sum->created,
		   sum->gc_freed, sum->forgotten, sum->banned, sum->flushes);
	seq_printf(m, " cut %llu aborted %llu\n", sum->cut, sum->aborted);
	seq_printf(m, "# %-38s %-9s %-8s %-8s %-8s %-8s %s\n",
		   "source", "tokens", "next_s", "full_s", "passed", "denied",
		   "ban");
}

static int smtplimit_seq_show(struct seq_file *m, void *v)
{
	struct smtplimit_seq *s = m->private;
	const struct smtplimit_snap *snap = s->snap;
	const struct smtplimit_row *row = v;
	struct smtplimit_view view;
	char source[INET6_ADDRSTRLEN + 5], tokens[24];
	u64 whole;
	u32 milli;

	if (v == SEQ_START_TOKEN) {
		smtplimit_seq_header(m, snap);
		return 0;
	}
	if (smtplimit_is_ipv4(s->table))
		snprintf(source, sizeof(source), "%pI4/%u", &row->addr.ip,
			 s->table->srcmask);
	else
		snprintf(source, sizeof(source), "%pI6c/%u", &row->addr.ip6,
			 s->table->srcmask);
	smtplimit_view(row->tat, snap->now, &snap->bucket, &smtplimit_clock,
		       &view);
	whole = div_u64_rem(abs(view.tokens_milli), 1000, &milli);
	snprintf(tokens, sizeof(tokens), "%s%llu.%03u",
		 view.tokens_milli < 0 ? "-" : "", whole, milli);
	seq_printf(m, "%-40s %-9s %-8llu %-8llu %-8u %-8u %s\n", source,
		   tokens, view.next_s, view.full_s, row->passed, row->denied,
		   row->ban ? "yes" : "no");
	return 0;
}

static const struct seq_operations smtplimit_seq_ops = {
	.start = smtplimit_seq_start,
	.next = smtplimit_seq_next,
	.stop = smtplimit_seq_stop,
	.show = smtplimit_seq_show,
};

static int smtplimit_proc_open(struct inode *inode, struct file *file)
{
	struct smtplimit_seq *s;

	s = __seq_open_private(file, &smtplimit_seq_ops, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->table = pde_data(inode);
	mutex_init(&s->write_lock);
	return 0;
}

static void smtplimit_write_release(struct smtplimit_table *t,
				    struct smtplimit_seq *s);

/*
 * proc_ops has no flush, so an error at close would reach no one: a line
 * still without its newline is dropped, counted and logged, and so is a
 * transaction not closed (see smtplimit_write_release()).
 */
static int smtplimit_proc_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct smtplimit_seq *s = m->private;
	struct smtplimit_table *t = s->table;

	if (!smtplimit_cmd_blank(s->tail, s->tail_len)) {
		this_cpu_inc(t->stats->cut);
		pr_warn_ratelimited("%s_smtplimit/%s: a write's last line had no newline at close, dropped: \"%*pE\"\n",
				    smtplimit_is_ipv4(t) ? "ipt" : "ip6t",
				    t->name, s->tail_len, s->tail);
	}
	smtplimit_write_release(t, s);
	mutex_destroy(&s->write_lock);
	smtplimit_seq_free(s);
	return seq_release_private(inode, file);
}

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

static ssize_t smtplimit_proc_write(struct file *file, const char __user *input,
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
	 * value sees what the write changed.
	 */
	atomic_inc_return(&t->snap_gen);
	return ret;
}

/*
 * At close: a transaction still open is dropped, counted and logged (13, a
 * mutant, applies it).
 */
static void smtplimit_write_release(struct smtplimit_table *t,
				    struct smtplimit_seq *s)
{
	if (s->in_txn) {
		pr_warn_ratelimited("%s_smtplimit/%s: a transaction was not closed by \"}\" at close, dropped: %zu commands\n",
				    smtplimit_is_ipv4(t) ? "ipt" : "ip6t",
				    t->name, s->ncmds);
		if (SMTPLIMIT_MUTANT_IS(13))
			smtplimit_apply_unit(t, s->cmds, s->ncmds);
	}
	smtplimit_cmds_drop(t, s);
}

const struct proc_ops smtplimit_proc_ops = {
	.proc_open = smtplimit_proc_open,
	.proc_read = seq_read,
	.proc_write = smtplimit_proc_write,
	.proc_lseek = seq_lseek,
	.proc_release = smtplimit_proc_release,
};
