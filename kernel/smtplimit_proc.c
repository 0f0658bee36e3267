// SPDX-License-Identifier: GPL-2.0
/*
 * The proc file of each table, /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name>: the read, a sorted copy of the live
 * entries, and the write, commands that forget, ban or flush sources.
 *
 * Locking: a read takes no table-wide lock: it walks the table under RCU
 * (smtplimit_walk()) and takes each entry's lock to copy it. A write is
 * parsed and given its memory before it takes the table's write_mutex, which
 * serialises the writes to one table; under it, entries are changed under
 * their own locks as smtplimit_table.h describes. The line a write left
 * unterminated is kept in the open file's smtplimit_seq under its
 * write_lock, taken for the whole write before the table's write_mutex.
 * Both run in process context and may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/inet.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>

#include "compat.h"
#include "smtplimit_cmd.h"
#include "smtplimit_table.h"

/* The read */

/*
 * One file per table. Reading position 0 copies the live entries into
 * a private array sorted by address, and the read lists that copy: each
 * source once, all figures against one now, however slowly the reader goes.
 * The copy is not atomic: an entry created while the copy is taken may be
 * in it, an entry freed meanwhile may still be.
 *
 * An rhashtable walk meets every entry present throughout at least once,
 * some twice: it starts over from the first bucket when the table is
 * resized under it, and a walk stopped to reschedule next to an entry that
 * is then unlinked may meet a neighbour again. Listing straight from the walk
 * would show those sources twice; the copy keeps everything the walk met
 * (starting it over would lose entries not yet moved to the new table),
 * and the sort puts each repeat next to its twin, to be dropped.
 * A table of N sources costs a reader N rows of memory while it is open,
 * charged to the reader and freed when it reaches the end.
 */

struct smtplimit_row {
	union smtplimit_addr addr;	/* zero past the table's key length */
	u64 tat;
	u32 passed;
	u32 denied;
};

struct smtplimit_seq {
	struct smtplimit_table *table;
	struct smtplimit_row *rows;	/* sorted, no address twice */
	u32 nrows;
	u32 live;			/* the header's count of entries */
	u64 now;			/* the moment the rows were copied */
	struct smtplimit_bucket bucket;	/* the header's rate and burst */
	u32 rate;
	u32 max;
	/* The write side: see "The write: lines across writes" below. */
	struct mutex write_lock;	/* one write of this open file at a time */
	bool refused;			/* a write was refused: no more */
	u8 tail_len;
	char tail[XT_SMTPLIMIT_LINE_MAX];	/* the unterminated last line */
};

/* Gives the copy back; the next read of position 0 takes a new one. */
static void smtplimit_seq_free(struct smtplimit_seq *s)
{
	kvfree(s->rows);
	s->rows = NULL;
	s->nrows = 0;
}

static int smtplimit_row_cmp(const void *a, const void *b)
{
	const struct smtplimit_row *ra = a, *rb = b;

	return memcmp(&ra->addr, &rb->addr, sizeof(ra->addr));
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

/* Position 0: the header's figures and the rows, all from one now. */
static int smtplimit_seq_snapshot(struct smtplimit_seq *s)
{
	struct smtplimit_table *t = s->table;
	struct smtplimit_copy c = {};
	struct smtplimit_row *rows;
	u32 i, n;

	smtplimit_seq_free(s);
	s->now = smtplimit_now();
	s->rate = smtplimit_table_rate(t, &s->bucket);
	s->max = READ_ONCE(t->max);

	/* Live entries hold places, so count bounds them but for a race. */
	c.room = atomic_read(&t->count);
	c.room += c.room / 8 + 64;
	c.now = s->now;
	for (;;) {
		c.rows = kvmalloc_array(c.room, sizeof(*c.rows),
					GFP_KERNEL_ACCOUNT);
		if (!c.rows)
			return -ENOMEM;
		c.n = 0;
		c.overflow = false;
		smtplimit_walk(t, smtplimit_copy_visit, &c);
		if (!c.overflow)
			break;
		kvfree(c.rows);
		if (c.room > XT_SMTPLIMIT_HTABLE_MAX_LIMIT)
			return -EBUSY;	/* the table would not hold still */
		c.room *= 2;
	}

	rows = c.rows;
	sort(rows, c.n, sizeof(*rows), smtplimit_row_cmp, NULL);
	for (i = 0, n = 0; i < c.n; i++)
		if (n == 0 || smtplimit_row_cmp(&rows[n - 1], &rows[i]))
			rows[n++] = rows[i];
	s->rows = rows;
	s->nrows = n;
	/*
	 * A source evicted while the copy went on may be listed with the one
	 * that took its place; the table never held more than its places.
	 */
	s->live = min_t(u32, n, atomic_read(&t->count));
	return 0;
}

static void *smtplimit_seq_start(struct seq_file *m, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;
	int err;

	if (*pos == 0) {
		err = smtplimit_seq_snapshot(s);
		return err ? ERR_PTR(err) : SEQ_START_TOKEN;
	}
	if (*pos <= s->nrows)
		return &s->rows[*pos - 1];
	smtplimit_seq_free(s);	/* the end */
	return NULL;
}

static void *smtplimit_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;

	++*pos;
	return *pos <= s->nrows ? &s->rows[*pos - 1] : NULL;
}

static void smtplimit_seq_stop(struct seq_file *m, void *v)
{
}

static void smtplimit_seq_header(struct seq_file *m, struct smtplimit_seq *s)
{
	struct smtplimit_table *t = s->table;
	struct smtplimit_stats sum = {};
	const char *unit;
	u32 count;
	int cpu;

	for_each_possible_cpu(cpu) {
		const struct smtplimit_stats *st = per_cpu_ptr(t->stats, cpu);

		sum.passed += READ_ONCE(st->passed);
		sum.denied += READ_ONCE(st->denied);
		sum.evicted += READ_ONCE(st->evicted);
		sum.untracked += READ_ONCE(st->untracked);
		sum.created += READ_ONCE(st->created);
		sum.gc_freed += READ_ONCE(st->gc_freed);
		sum.forgotten += READ_ONCE(st->forgotten);
		sum.banned += READ_ONCE(st->banned);
		sum.flushes += READ_ONCE(st->flushes);
		sum.cut += READ_ONCE(st->cut);
	}
	unit = smtplimit_rate_split(s->rate, &count);
	seq_printf(m, "# %s: rate %u/%s burst %u srcmask %u entries %u/%u",
		   t->name, count, unit, s->bucket.burst, t->srcmask, s->live,
		   s->max);
	seq_printf(m, " passed %llu denied %llu evicted %llu untracked %llu",
		   sum.passed, sum.denied, sum.evicted, sum.untracked);
	seq_printf(m, " strict %s created %llu gc_freed %llu forgotten %llu banned %llu flushes %llu",
		   s->bucket.strict ? "yes" : "no", sum.created, sum.gc_freed,
		   sum.forgotten, sum.banned, sum.flushes);
	seq_printf(m, " cut %llu\n", sum.cut);
	seq_printf(m, "# %-38s %-9s %-8s %-8s %-8s %s\n",
		   "source", "tokens", "next_s", "full_s", "passed", "denied");
}

static int smtplimit_seq_show(struct seq_file *m, void *v)
{
	struct smtplimit_seq *s = m->private;
	const struct smtplimit_row *row = v;
	struct smtplimit_view view;
	char source[INET6_ADDRSTRLEN + 5], tokens[24];
	u64 whole;
	u32 milli;

	if (v == SEQ_START_TOKEN) {
		smtplimit_seq_header(m, s);
		return 0;
	}
	if (smtplimit_is_ipv4(s->table))
		snprintf(source, sizeof(source), "%pI4/%u", &row->addr.ip,
			 s->table->srcmask);
	else
		snprintf(source, sizeof(source), "%pI6c/%u", &row->addr.ip6,
			 s->table->srcmask);
	smtplimit_view(row->tat, s->now, &s->bucket, &smtplimit_clock, &view);
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

/*
 * proc_ops has no flush, so an error at close would reach no one: a line
 * still without its newline is dropped, counted and logged.
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
	mutex_destroy(&s->write_lock);
	smtplimit_seq_free(s);
	return seq_release_private(inode, file);
}

/* The write: parsing */

/*
 * One command a line, in the syntax of smtplimit_cmd.h (its one home, shared
 * with the admin command). A write is parsed, validated and given its
 * memory before anything is applied.
 */

/* Split @buf (NUL-ended, no other NUL) into commands; -EINVAL on any bad line. */
static int smtplimit_parse_write(const struct smtplimit_table *t, char *buf,
				 struct smtplimit_cmd *cmds, unsigned int *n)
{
	char *line, *next;
	const char *why;
	size_t len;

	*n = 0;
	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		len = next ? next - line : strlen(line);
		if (next)
			next++;
		if (smtplimit_cmd_blank(line, len))
			continue;
		if (smtplimit_cmd_parse(smtplimit_is_ipv4(t), line, len,
					&cmds[*n], &why))
			return -EINVAL;
		/* Not yet applied by this module: refused as any bad line. */
		if (cmds[*n].op != SMTPLIMIT_FORGET &&
		    cmds[*n].op != SMTPLIMIT_BAN && cmds[*n].op != SMTPLIMIT_FLUSH)
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
	union smtplimit_addr addr = {};
	unsigned int i;

	memcpy(&addr, cmd->addr, sizeof(cmd->addr));
	for (i = 0; i < (smtplimit_is_ipv4(t) ? 1 : 4); i++)
		key->ip6.s6_addr32[i] = addr.ip6.s6_addr32[i] &
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
	memcpy(&key, cmd->addr, sizeof(cmd->addr));
	for (i = 0; i < 4; i++)
		key.ip6.s6_addr32[i] &= mask.ip6.s6_addr32[i];
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
	u64 tat = smtplimit_ban(now, bucket, &smtplimit_clock,
				div_u64(cmd->ms, 1000));
	struct smtplimit_entry *e, *fresh;
	bool banned = cmd->ms != 0;
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
	    !smtplimit_cmd_blank(buf + end, len - end))
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
	return ret;
}

const struct proc_ops smtplimit_proc_ops = {
	.proc_open = smtplimit_proc_open,
	.proc_read = seq_read,
	.proc_write = smtplimit_proc_write,
	.proc_lseek = seq_lseek,
	.proc_release = smtplimit_proc_release,
};
