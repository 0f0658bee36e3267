// SPDX-License-Identifier: GPL-2.0
/*
 * The proc file of each table, /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name>: the read, a sorted copy of the live
 * entries shared by the table's readers, and the write, commands that
 * forget, ban or flush sources.
 *
 * Locking: a read takes no lock over the entries: it walks the table under
 * RCU (smtplimit_walk()) and takes each entry's lock to copy it. The table's
 * snap_mutex guards its cached copy and is held while one is built, so that
 * readers arriving meanwhile wait for it and share it; each copy is
 * refcounted (its readers and the cache) and freed at the last put. A write is
 * parsed and given its memory before it takes the table's write_mutex, which
 * serialises the writes to one table; under it, entries are changed under
 * their own locks as smtplimit_table.h describes. The line a write left
 * unterminated is kept in the open file's smtplimit_seq under its
 * write_lock, taken for the whole write before the table's write_mutex.
 * Both run in process context and may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/ctype.h>
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
	seq_printf(m, " cut %llu\n", sum->cut);
	seq_printf(m, "# %-38s %-9s %-8s %-8s %-8s %s\n",
		   "source", "tokens", "next_s", "full_s", "passed", "denied");
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
	seq_printf(m, "%-40s %-9s %-8llu %-8llu %-8u %u\n", source, tokens,
		   view.next_s, view.full_s, row->passed, row->denied);
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

static bool smtplimit_blank(const char *p, size_t len)
{
	while (len && isspace(*p)) {
		p++;
		len--;
	}
	return !len;
}

/*
 * proc_ops has no flush, so an error at close would reach no one: a line
 * still without its newline is dropped, counted and logged.
 */
static int smtplimit_proc_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct smtplimit_seq *s = m->private;
	struct smtplimit_table *t = s->table;

	if (!smtplimit_blank(s->tail, s->tail_len)) {
		this_cpu_inc(t->stats->cut);
		pr_warn_ratelimited("%s_smtplimit/%s: a write's last line had no newline at close, dropped: \"%*pE\"\n",
				    smtplimit_is_ipv4(t) ? "ipt" : "ip6t",
				    t->name, s->tail_len, s->tail);
	}
	mutex_destroy(&s->write_lock);
	smtplimit_seq_free(s);
	return seq_release_private(inode, file);
}

/* The write: parsing */

/*
 * One command a line, "-ADDR[/LEN]" forgets the sources within
 * a prefix, "+ADDR[ SECONDS]" bans one, "/" flushes the table. A write is
 * parsed, validated and given its memory before anything is applied.
 */

enum smtplimit_op {
	SMTPLIMIT_FORGET,
	SMTPLIMIT_BAN,
	SMTPLIMIT_FLUSH,
};

struct smtplimit_cmd {
	union smtplimit_addr addr;	/* as written, host bits too */
	u32 seconds;			/* of a ban; 0: just empty the bucket */
	u8 op;				/* enum smtplimit_op */
	u8 len;				/* prefix length of a forget */
};

/*
 * in4_pton() and in6_pton() take more than inet_pton(3) does: leading zeros
 * in a dotted part ("192.0.2.010", which inet_aton(3) reads as octal, so as
 * 192.0.2.8) and hex groups of more than four digits ("02001:db8::1"). Refuse
 * both, so that an address written here means what it means to every other
 * tool. Each run of digits is decimal if a dot touches it, else hex.
 */
static bool smtplimit_addr_as_inet_pton(const char *p, size_t len)
{
	size_t i, start;

	for (i = 0; i < len; i = start + 1) {
		for (start = i; start < len && isxdigit(p[start]); start++)
			;
		if (start == i)
			continue;
		if ((i > 0 && p[i - 1] == '.') || (start < len && p[start] == '.')) {
			if (p[i] == '0' && start - i > 1)
				return false;
		} else if (start - i > 4) {
			return false;
		}
	}
	return true;
}

static int smtplimit_parse_cmd(const struct smtplimit_table *t,
			       const char *line, struct smtplimit_cmd *cmd)
{
	unsigned int width = smtplimit_is_ipv4(t) ? 32 : 128;
	const char *p = line + 1, *end;
	size_t len;
	int ok;

	memset(cmd, 0, sizeof(*cmd));
	if (strcmp(line, "/") == 0) {
		cmd->op = SMTPLIMIT_FLUSH;
		return 0;
	}
	if (line[0] == '-')
		cmd->op = SMTPLIMIT_FORGET;
	else if (line[0] == '+')
		cmd->op = SMTPLIMIT_BAN;
	else
		return -EINVAL;

	len = strcspn(p, cmd->op == SMTPLIMIT_FORGET ? "/" : " ");
	if (smtplimit_is_ipv4(t))
		ok = in4_pton(p, len, (u8 *)&cmd->addr.ip, -1, &end);
	else
		ok = in6_pton(p, len, cmd->addr.ip6.s6_addr, -1, &end);
	if (!ok || end != p + len || !smtplimit_addr_as_inet_pton(p, len))
		return -EINVAL;
	p += len;
	cmd->len = width;
	if (*p == '\0')
		return 0;
	/* One separator, then digits only: kstrto*() would take "+" too. */
	if (!isdigit(p[1]))
		return -EINVAL;
	if (cmd->op == SMTPLIMIT_FORGET)
		return kstrtou8(p + 1, 10, &cmd->len) || cmd->len > width ?
		       -EINVAL : 0;
	if (kstrtou32(p + 1, 10, &cmd->seconds) || !cmd->seconds ||
	    cmd->seconds > XT_SMTPLIMIT_BAN_MAX)
		return -EINVAL;
	return 0;
}

/* Split @buf (NUL-ended, no other NUL) into commands; -EINVAL on any bad line. */
static int smtplimit_parse_write(const struct smtplimit_table *t, char *buf,
				 struct smtplimit_cmd *cmds, unsigned int *n)
{
	char *line, *next;

	*n = 0;
	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*skip_spaces(line))
			continue;
		if (strlen(line) > XT_SMTPLIMIT_LINE_MAX ||
		    smtplimit_parse_cmd(t, line, &cmds[*n]))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

/* @addr masked to the table's srcmask: the key of the entry holding it. */
static void smtplimit_cmd_key(const struct smtplimit_table *t,
			      const struct smtplimit_cmd *cmd,
			      union smtplimit_addr *key)
{
	unsigned int i;

	for (i = 0; i < (smtplimit_is_ipv4(t) ? 1 : 4); i++)
		key->ip6.s6_addr32[i] = cmd->addr.ip6.s6_addr32[i] &
					t->mask.ip6.s6_addr32[i];
}

/* The write: applying */

/* Unhash the sources within @cmd's prefix, owing or not; returns how many. */
static unsigned int smtplimit_apply_forget(struct smtplimit_table *t,
					   const struct smtplimit_cmd *cmd,
					   u64 now)
{
	union smtplimit_addr key = {}, mask = {};
	struct smtplimit_sweep within = { .now = now, .owing_too = true,
					  .prefix = &key, .mask = &mask };
	struct smtplimit_entry *e;
	unsigned int i, killed = 0;

	if (cmd->len >= t->srcmask) {
		/* At most one entry holds the address. */
		smtplimit_cmd_key(t, cmd, &key);
		rcu_read_lock();
		e = smtplimit_lookup(t, &key);
		if (e && smtplimit_entry_kill(t, e, now, SMTPLIMIT_KILL_ANY)) {
			smtplimit_place_release(t);
			killed = 1;
		}
		rcu_read_unlock();
		return killed;
	}
	smtplimit_prefix_mask(cmd->len, 4, mask.ip6.s6_addr32);
	for (i = 0; i < 4; i++)
		key.ip6.s6_addr32[i] = cmd->addr.ip6.s6_addr32[i] &
				       mask.ip6.s6_addr32[i];
	return smtplimit_sweep(t, &within);
}

/*
 * Set the ban's debt on the source's entry, or create one with it from
 * @spare and a place already taken for it (*places), or one taken now if
 * the entry died since. -ENOMEM if the table had no memory for it, -ENOSPC
 * if it is full of bans. Called without RCU held: it may sleep.
 */
static int smtplimit_apply_ban(struct smtplimit_table *t,
			       const struct smtplimit_cmd *cmd,
			       const struct smtplimit_bucket *bucket, u64 now,
			       struct smtplimit_entry **spare,
			       unsigned int *places)
{
	u64 tat = smtplimit_ban(now, bucket, &smtplimit_clock, cmd->seconds);
	struct smtplimit_entry *e, *fresh;
	bool banned = cmd->seconds != 0;
	union smtplimit_addr key;
	bool done = false;

	smtplimit_cmd_key(t, cmd, &key);
	for (;;) {
		rcu_read_lock();
		e = smtplimit_lookup_live(t, &key);
		if (e) {
			spin_lock_bh(&e->lock);
			done = !e->dead;
			if (done) {
				e->tat = tat;
				e->banned = banned;
			}
			spin_unlock_bh(&e->lock);
		}
		rcu_read_unlock();
		if (done)
			break;
		if (e)			/* died meanwhile: look again */
			continue;

		/*
		 * *spare is NULL if it was spent on an insert that lost a race
		 * to another entry, which has died since.
		 */
		if (!*spare)
			*spare = smtplimit_entry_alloc(t, GFP_KERNEL);
		if (!*spare)
			return -ENOMEM;
		if (*places)
			(*places)--;
		else if (!smtplimit_place_take_sleeping_walk(t, now))
			return -ENOSPC;
		fresh = *spare;
		*spare = NULL;
		e = smtplimit_entry_insert(t, fresh, &key, tat, banned);
		if (!e)
			return -ENOMEM;
		if (e == fresh)
			break;
		/*
		 * A packet's entry for the source came first: set the ban on
		 * it. One found dying is unhashed by its killer next; let it.
		 */
		cond_resched();
	}
	this_cpu_inc(t->stats->banned);
	return 0;
}

/*
 * Take a place for each ban of a source not tracked yet: all or none, and
 * none evicted unless all can be had.
 */
static int smtplimit_places_take_for_bans(struct smtplimit_table *t,
					  const struct smtplimit_cmd *cmds,
					  unsigned int n, u64 now,
					  unsigned int *places)
{
	unsigned int i, need = 0;
	union smtplimit_addr key;
	bool tracked;

	*places = 0;
	for (i = 0; i < n; i++) {
		if (cmds[i].op != SMTPLIMIT_BAN)
			continue;
		smtplimit_cmd_key(t, &cmds[i], &key);
		rcu_read_lock();
		tracked = smtplimit_lookup_live(t, &key);
		rcu_read_unlock();
		need += !tracked;
	}
	if (!smtplimit_places_available(t, need, now))
		return -ENOSPC;
	for (; *places < need; (*places)++) {
		if (!smtplimit_place_take_sleeping_walk(t, now)) {
			for (; *places; (*places)--)
				smtplimit_place_release(t);
			return -ENOSPC;
		}
	}
	return 0;
}

static int smtplimit_apply_cmds(struct smtplimit_table *t,
				const struct smtplimit_cmd *cmds, unsigned int n,
				struct smtplimit_entry **spares)
{
	struct smtplimit_sweep all = { .owing_too = true };
	struct smtplimit_bucket bucket;
	unsigned int i, places;
	u64 now = smtplimit_now();
	int err;

	smtplimit_table_rate(t, &bucket);
	err = smtplimit_places_take_for_bans(t, cmds, n, now, &places);
	for (i = 0; i < n && !err; i++) {
		switch (cmds[i].op) {
		case SMTPLIMIT_FLUSH:
			all.now = now;
			this_cpu_add(t->stats->forgotten, smtplimit_sweep(t, &all));
			this_cpu_inc(t->stats->flushes);
			break;
		case SMTPLIMIT_FORGET:
			this_cpu_add(t->stats->forgotten,
				     smtplimit_apply_forget(t, &cmds[i], now));
			break;
		case SMTPLIMIT_BAN:
			err = smtplimit_apply_ban(t, &cmds[i], &bucket, now,
						  spares++, &places);
			break;
		}
	}
	for (; places; places--)
		smtplimit_place_release(t);
	return err;
}

/* The write: lines across writes */

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
 */
static ssize_t smtplimit_write_lines(struct smtplimit_table *t,
				     struct smtplimit_seq *s,
				     const char __user *input, size_t size)
{
	struct smtplimit_entry **spares = NULL;
	struct smtplimit_cmd *cmds = NULL;
	size_t len, held = s->tail_len, end;
	unsigned int i, n, bans = 0;
	char *buf, *nl;
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
	    !smtplimit_blank(buf + end, len - end))
		goto out;
	s->tail_len = min_t(size_t, len - end, XT_SMTPLIMIT_LINE_MAX);
	memcpy(s->tail, buf + end, s->tail_len);
	buf[end] = '\0';

	/* At most one command per byte pair: a line and its newline. */
	err = -ENOMEM;
	cmds = kvcalloc(end / 2 + 1, sizeof(*cmds), GFP_KERNEL);
	if (!cmds)
		goto out;
	err = smtplimit_parse_write(t, buf, cmds, &n);
	if (err && SMTPLIMIT_MUTANT_IS(5) && n) {
		struct smtplimit_entry *spare = NULL;

		mutex_lock(&t->write_mutex);
		smtplimit_apply_cmds(t, cmds, 1, &spare);
		mutex_unlock(&t->write_mutex);
		if (spare)
			smtplimit_entry_free_unused(t, spare);
	}
	if (err)
		goto out;
	for (i = 0; i < n; i++)
		bans += cmds[i].op == SMTPLIMIT_BAN;
	err = -ENOMEM;
	spares = kvcalloc(bans, sizeof(*spares), GFP_KERNEL);
	if (!spares)
		goto out;
	for (i = 0; i < bans; i++) {
		spares[i] = smtplimit_entry_alloc(t, GFP_KERNEL);
		if (!spares[i])
			goto out;
	}

	mutex_lock(&t->write_mutex);
	err = smtplimit_apply_cmds(t, cmds, n, spares);
	mutex_unlock(&t->write_mutex);
out:
	for (i = 0; spares && i < bans; i++)
		if (spares[i])
			smtplimit_entry_free_unused(t, spares[i]);
	kvfree(spares);
	kvfree(cmds);
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

const struct proc_ops smtplimit_proc_ops = {
	.proc_open = smtplimit_proc_open,
	.proc_read = seq_read,
	.proc_write = smtplimit_proc_write,
	.proc_lseek = seq_lseek,
	.proc_release = smtplimit_proc_release,
};
