// SPDX-License-Identifier: GPL-2.0
/*
 * The places of xt_smtplimit's tables, and eviction. A place is one unit of
 * the table's count and of the shared counts (the netns's, a non-initial
 * user namespace's total), taken in all or none before an entry is
 * inserted. This file takes places, for a packet's new source (evicting by
 * a random sample when a count is at its maximum) or for a proc write
 * (walking the whole table if the sample fails), answers whether a write's
 * places can be had, gives them back, and trims a table down to a lowered
 * maximum. A ban that holds is never evicted.
 *
 * Locking: the counts are atomics, and a place is reserved by compare and
 * exchange below its limit; the entries are chosen by lockless hints and
 * unhashed by smtplimit_entry_kill() (smtplimit_table.c), which rechecks
 * them under their lock. smtplimit_place_take() runs in softirq or under
 * RCU and may not sleep; smtplimit_place_take_sleeping_walk(),
 * smtplimit_places_available() and smtplimit_trim() walk the table in
 * process context without RCU held and may sleep. See smtplimit_table.h.
 */
#include <linux/atomic.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/random.h>
#include <linux/rhashtable.h>
#include <linux/sched.h>

#include "smtplimit_table.h"

#define SMTPLIMIT_EVICT_SAMPLE	8	/* entries compared per eviction */
#define SMTPLIMIT_EVICT_BUCKETS	4096	/* most buckets visited for them */
#define SMTPLIMIT_PLACE_TRIES	3	/* evictions tried for one place */
#define SMTPLIMIT_RESERVED	256	/* most places a table keeps past the
					 * netns and userns caps
					 */

/* Eviction */

/* Evict @e, unless someone else killed it first or a ban now holds it. */
static bool smtplimit_evict_entry(struct smtplimit_table *t,
				  struct smtplimit_entry *e, u64 now)
{
	if (!smtplimit_entry_kill(t, e, now, SMTPLIMIT_KILL_EVICT))
		return false;
	this_cpu_inc(t->stats->evicted);
	return true;
}

/*
 * Unhash, out of a sample of at least SMTPLIMIT_EVICT_SAMPLE entries from a
 * random run of buckets, the one whose bucket will be full soonest; banned
 * sources are never taken. Its place in the table and shared counts passes to
 * the caller. Called under RCU.
 *
 * rhashtable keeps between 3/8 and 3/4 of an entry per bucket, so a few
 * dozen buckets give the sample. Until it has shrunk after the maximum was
 * lowered, or when a shared cap (netns, userns) rather than its own maximum is
 * reached, the table can be far sparser: the run is then long enough to
 * expect twice the sample, up to SMTPLIMIT_EVICT_BUCKETS buckets. During a
 * resize, entries move from the bucket table to its future one: the sample
 * goes on there.
 */
static bool smtplimit_evict(struct smtplimit_table *t, u64 now)
{
	u64 tolerance = READ_ONCE(t->tolerance);
	const struct bucket_table *tbl = rht_dereference_rcu(t->ht.tbl, &t->ht);
	unsigned int count = max_t(int, atomic_read(&t->count), 1);
	struct smtplimit_entry *e, *victim = NULL;
	unsigned int i, run, seen = 0, start;
	u64 debt, best = U64_MAX;
	struct rhash_head *pos;

	if (SMTPLIMIT_MUTANT_IS(3))
		return false;
	for (; tbl && seen < SMTPLIMIT_EVICT_SAMPLE;
	     tbl = rht_dereference_rcu(tbl->future_tbl, &t->ht)) {
		run = div_u64(2ULL * SMTPLIMIT_EVICT_SAMPLE * tbl->size, count);
		run = max_t(unsigned int, run, 4 * SMTPLIMIT_EVICT_SAMPLE);
		run = min3(run, tbl->size, (unsigned int)SMTPLIMIT_EVICT_BUCKETS);
		start = get_random_u32();
		for (i = 0; i < run && seen < SMTPLIMIT_EVICT_SAMPLE; i++) {
			rht_for_each_entry_rcu(e, pos, tbl,
					       (start + i) & (tbl->size - 1), node) {
				seen++;
				debt = smtplimit_debt(smtplimit_tat_hint(e), now);
				if (smtplimit_ban_holds(e, debt, tolerance))
					continue;
				if (debt < best && !READ_ONCE(e->dead) &&
				    !READ_ONCE(e->held)) {
					best = debt;
					victim = e;
				}
			}
		}
	}
	return victim && smtplimit_evict_entry(t, victim, now);
}

/* Places */

/* Reserve a place below @limit: the count before, or -1 if there is none. */
static int smtplimit_inc_below(atomic_t *v, unsigned int limit)
{
	int old = atomic_read(v);

	do {
		if ((unsigned int)old >= limit)
			return -1;
	} while (!atomic_try_cmpxchg(v, &old, old + 1));
	return old;
}

/* The places the tables of non-initial user namespaces share (17: no cap). */
static unsigned int smtplimit_userns_total(void)
{
	return SMTPLIMIT_MUTANT_IS(17) ? INT_MAX :
	       READ_ONCE(smtplimit_userns_total_entries);
}

/*
 * The places a table has whatever the counts its cap shares with other
 * tables (the netns's, and for a table of a non-initial user namespace the
 * userns total): SMTPLIMIT_RESERVED, or a 64th of the smaller cap if less,
 * so that one table filling a shared cap leaves every other table able to
 * track new sources. Those places count in the shared caps too, which
 * N tables can so exceed by at most N times this.
 */
static unsigned int smtplimit_reserved(const struct smtplimit_table *t)
{
	unsigned int cap = READ_ONCE(smtplimit_netns_max_entries);

	if (t->userns)
		cap = min(cap, smtplimit_userns_total());
	return min(cap / 64, (unsigned int)SMTPLIMIT_RESERVED);
}

/* Reserve a place in the table count and the shared ones, in all or none. */
static bool smtplimit_place_take_free(struct smtplimit_table *t)
{
	int old = smtplimit_inc_below(&t->count, READ_ONCE(t->max));

	if (old < 0)
		return false;
	if ((unsigned int)old < smtplimit_reserved(t)) {
		atomic_inc(&t->sn->entries);
		if (t->userns)
			atomic_inc(&smtplimit_userns_entries);
		return true;
	}
	if (smtplimit_inc_below(&t->sn->entries,
				READ_ONCE(smtplimit_netns_max_entries)) < 0)
		goto no_place;
	if (!t->userns ||
	    smtplimit_inc_below(&smtplimit_userns_entries,
				smtplimit_userns_total()) >= 0)
		return true;
	atomic_dec(&t->sn->entries);
no_place:
	atomic_dec(&t->count);
	return false;
}

void smtplimit_place_release(struct smtplimit_table *t)
{
	atomic_dec(&t->count);
	atomic_dec(&t->sn->entries);
	if (t->userns)
		atomic_dec(&smtplimit_userns_entries);
}

/*
 * Reserve a place for a new entry in the table and the netns counts; at a
 * maximum, evict an entry and take its place. An eviction fails when its
 * victim is killed first by someone else (GC, a forget or flush written to
 * the proc file), which gives a place back, or when its sample meets no
 * entry, as while a sweep down to a lowered maximum empties the table from
 * its first bucket on: then try again, a few times. Called under RCU.
 */
bool smtplimit_place_take(struct smtplimit_table *t, u64 now)
{
	unsigned int tries;

	for (tries = 0; tries < SMTPLIMIT_PLACE_TRIES; tries++)
		if (smtplimit_place_take_free(t) || smtplimit_evict(t, now))
			return true;
	return false;
}

struct smtplimit_place_walk {
	u64 now;
	u64 tolerance;
	bool got;			/* a place, free or evicted */
};

static bool smtplimit_place_walk_visit(struct smtplimit_table *t,
				       struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_place_walk *pw = arg;
	u64 debt = smtplimit_debt(smtplimit_tat_hint(e), pw->now);

	pw->got = smtplimit_place_take_free(t) ||
		  (!smtplimit_ban_holds(e, debt, pw->tolerance) &&
		   smtplimit_evict_entry(t, e, pw->now));
	return !pw->got;
}

/*
 * A place for a source banned through the proc file. The sampled evictions
 * of smtplimit_place_take() can all fail while an entry that no ban holds
 * remains (see there); a proc writer may sleep, so it then walks the whole
 * table for such an entry. Fails only when the walk finds none: every entry
 * is held by a ban. Called without RCU held.
 */
bool smtplimit_place_take_sleeping_walk(struct smtplimit_table *t, u64 now)
{
	struct smtplimit_place_walk pw = {
		.now = now, .tolerance = READ_ONCE(t->tolerance),
	};

	rcu_read_lock();
	pw.got = smtplimit_place_take(t, now);
	rcu_read_unlock();
	if (!pw.got)
		smtplimit_walk(t, smtplimit_place_walk_visit, &pw);
	return pw.got || smtplimit_place_take_free(t);
}

struct smtplimit_places_count {
	u64 now;
	u64 tolerance;
	unsigned int found;		/* free places and entries no ban holds */
	unsigned int need;
};

static bool smtplimit_places_count_visit(struct smtplimit_table *t,
					 struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_places_count *pc = arg;
	u64 debt = smtplimit_debt(smtplimit_tat_hint(e), pc->now);

	if (!READ_ONCE(e->dead) && !READ_ONCE(e->held) &&
	    !smtplimit_ban_holds(e, debt, pc->tolerance))
		pc->found++;
	return pc->found < pc->need;
}

/*
 * Whether @need places can be had without evicting a ban: free ones, then
 * entries no ban holds (each frees a place in the table and the shared
 * counts alike). Asked before anything is evicted, so that a write refused
 * with -ENOSPC has evicted nothing. Writers to a table are serialised and a
 * packet only trades an entry no ban holds for another, so the answer holds
 * while places are taken unless the maximum is lowered meanwhile, another
 * table takes the last of a shared cap, or a resize shows the walk
 * an entry twice. Called without RCU held.
 */
bool smtplimit_places_available(struct smtplimit_table *t,
				unsigned int need, u64 now)
{
	int count = atomic_read(&t->count);
	int table = READ_ONCE(t->max) - count;
	int shared = READ_ONCE(smtplimit_netns_max_entries) -
		     atomic_read(&t->sn->entries);
	int reserved = (int)smtplimit_reserved(t) - count;
	struct smtplimit_places_count pc = {
		.now = now, .tolerance = READ_ONCE(t->tolerance), .need = need,
	};

	if (t->userns)
		shared = min_t(int, shared,
			       smtplimit_userns_total() -
			       atomic_read(&smtplimit_userns_entries));
	/* Reserved places count in the shared caps: the larger of the two. */
	pc.found = max(min(table, max(shared, reserved)), 0);

	if (pc.found < need)
		smtplimit_walk(t, smtplimit_places_count_visit, &pc);
	return pc.found >= need;
}

/* Down to a lowered maximum */

/*
 * Down to a lowered maximum: the fullest buckets go first, never a ban that
 * holds. A walk collects the debts of the entries no ban holds, the excess
 * smallest of them are found in place (quickselect), and two more walks
 * evict those owing less than the largest of them, then those owing as
 * much, until the count is down to the maximum. The walks meet a table
 * that packets keep changing, so a few rounds
 * are tried, the last in walk order; with no memory for the debts, walk
 * order it is. When only bans remain above the maximum, the table stays
 * above it until they may pass again (the next packet or GC frees them).
 */
struct smtplimit_trim {
	u64 now;
	u64 tolerance;
	u64 most;			/* evict only entries owing at most this */
	u64 *debts;			/* of the entries no ban holds */
	unsigned int n, room;
	unsigned int killed;
};

/* Whether a ban holds @e; mutant 10 pretends none ever does. */
static bool smtplimit_trim_spares(const struct smtplimit_trim *tr,
				  const struct smtplimit_entry *e, u64 debt)
{
	return !SMTPLIMIT_MUTANT_IS(10) &&
	       smtplimit_ban_holds(e, debt, tr->tolerance);
}

static bool smtplimit_trim_count_visit(struct smtplimit_table *t,
				       struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_trim *tr = arg;
	u64 debt = smtplimit_debt(smtplimit_tat_hint(e), tr->now);

	if (!READ_ONCE(e->dead) && !smtplimit_trim_spares(tr, e, debt))
		tr->debts[tr->n++] = debt;
	return tr->n < tr->room;
}

static bool smtplimit_trim_visit(struct smtplimit_table *t,
				 struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_trim *tr = arg;
	u64 debt = smtplimit_debt(smtplimit_tat_hint(e), tr->now);

	if (atomic_read(&t->count) <= READ_ONCE(t->max))
		return false;
	if (debt <= tr->most &&
	    smtplimit_entry_kill(t, e, tr->now, SMTPLIMIT_MUTANT_IS(10) ?
				 SMTPLIMIT_KILL_ANY : SMTPLIMIT_KILL_EVICT)) {
		smtplimit_place_release(t);
		tr->killed++;
	}
	return true;
}

/* The @k-th smallest (from 0) of @a[0..@n), reordering @a; @k < @n. */
static u64 smtplimit_select(u64 *a, unsigned int n, unsigned int k)
{
	long lo = 0, hi = n - 1, i, j;
	u64 pivot;

	while (lo < hi) {
		/* A random pivot: the debts are the senders' to choose. */
		pivot = a[lo + get_random_u32() % (hi - lo + 1)];
		for (i = lo, j = hi; i <= j;) {
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j)
				swap(a[i++], a[j--]);
		}
		/* Now a[lo..j] <= pivot <= a[i..hi], and a[j+1..i-1] == pivot. */
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;
		cond_resched();
	}
	return a[k];
}

#define SMTPLIMIT_TRIM_ROUNDS	3

void smtplimit_trim(struct smtplimit_table *t)
{
	struct smtplimit_trim tr = { .tolerance = READ_ONCE(t->tolerance) };
	unsigned int round, excess;
	bool selected;
	int count;

	for (round = 0; round < SMTPLIMIT_TRIM_ROUNDS; round++) {
		count = atomic_read(&t->count);
		if (count <= (int)READ_ONCE(t->max))
			break;
		excess = count - READ_ONCE(t->max);
		tr.now = smtplimit_now();
		tr.most = U64_MAX;
		tr.n = 0;
		tr.room = count + count / 8 + 64;
		tr.debts = round + 1 < SMTPLIMIT_TRIM_ROUNDS ?
			   kvmalloc_array(tr.room, sizeof(*tr.debts),
					  GFP_KERNEL | __GFP_NOWARN) : NULL;
		selected = tr.debts;
		if (selected) {
			smtplimit_walk(t, smtplimit_trim_count_visit, &tr);
			if (tr.n)
				tr.most = smtplimit_select(tr.debts, tr.n,
							   min(excess, tr.n) - 1);
			kvfree(tr.debts);
			if (!tr.n)	/* only bans are left */
				break;
		}
		tr.killed = 0;
		if (tr.most && tr.most != U64_MAX) {
			/* First every entry owing less, then some owing as much. */
			tr.most--;
			smtplimit_walk(t, smtplimit_trim_visit, &tr);
			tr.most++;
		}
		smtplimit_walk(t, smtplimit_trim_visit, &tr);
		this_cpu_add(t->stats->evicted, tr.killed);
		if (!tr.killed && !selected)
			break;
	}
}
