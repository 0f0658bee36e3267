// SPDX-License-Identifier: GPL-2.0
/*
 * The proc file of each table, /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name>: its operations, the open and release of
 * a file, and the read, a sorted copy of the live entries shared by the
 * table's readers. The write, the commands that forget, ban, lift, set or
 * flush sources, is in smtplimit_write.c; the state of an open file both
 * use is in smtplimit_proc.h.
 *
 * Locking: a read takes no lock over the entries: it walks the table under
 * RCU (smtplimit_walk()) and takes each entry's lock to copy it. The table's
 * snap_mutex guards its cached copy and is held while one is built, so that
 * readers arriving meanwhile wait for it and share it; each copy is
 * refcounted (its readers and the cache) and freed at the last put. Reads
 * run in process context and may sleep.
 */
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
#include <net/net_namespace.h>

#include "compat.h"
#include "smtplimit_proc.h"
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

/* The file: open, release, operations */

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

/*
 * proc_ops has no flush, so an error at close would reach no one: a line
 * still without its newline is dropped, counted and logged, and so is a
 * transaction not closed (see smtplimit_write_release()).
 */
static int smtplimit_proc_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct smtplimit_seq *s = m->private;

	smtplimit_write_release(s->table, s);
	mutex_destroy(&s->write_lock);
	smtplimit_seq_free(s);
	return seq_release_private(inode, file);
}

const struct proc_ops smtplimit_proc_ops = {
	.proc_open = smtplimit_proc_open,
	.proc_read = seq_read,
	.proc_write = smtplimit_proc_write,
	.proc_lseek = seq_lseek,
	.proc_release = smtplimit_proc_release,
};
