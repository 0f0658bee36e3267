// SPDX-License-Identifier: GPL-2.0
/*
 * The tables of xt_smtplimit: their entries, the places entries hold in the
 * table and netns counts, eviction for a new source when a count is at its
 * maximum, sweeps (by the GC, a lowered maximum, a forget or flush), and
 * tables' creation and destruction. The functions the match and the proc
 * file call are declared in smtplimit_table.h, with the locking rules.
 *
 * Context: the packet path (smtplimit_entry_create(), smtplimit_lookup())
 * runs in softirq under RCU and may not sleep; everything that walks the
 * whole table (sweeps, smtplimit_place_take_sleeping_walk(),
 * smtplimit_places_available()) runs in process context without RCU held
 * and may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inetdevice.h>
#include <linux/memcontrol.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/user_namespace.h>
#include <linux/wait.h>
#include <net/net_namespace.h>

#include "smtplimit_table.h"

/* Entry memory */

#define SMTPLIMIT_GC_INTERVAL	(2 * HZ)
#define SMTPLIMIT_EVICT_SAMPLE	8	/* entries compared per eviction */
#define SMTPLIMIT_EVICT_BUCKETS	4096	/* most buckets visited for them */
#define SMTPLIMIT_PLACE_TRIES	3	/* evictions tried for one place */
#define SMTPLIMIT_WALK_BATCH	1024	/* entries walked between reschedules */
#define SMTPLIMIT_RESERVED	256	/* most places a table keeps past the
					 * netns and userns caps
					 */

static struct kmem_cache *smtplimit_cache4 __read_mostly;
static struct kmem_cache *smtplimit_cache6 __read_mostly;
/* Table teardowns: their own, so that a netns exit and rmmod can wait for them. */
static struct workqueue_struct *smtplimit_wq __read_mostly;

static const struct rhashtable_params smtplimit_params4 = {
	.head_offset = offsetof(struct smtplimit_entry, node),
	.key_offset = offsetof(struct smtplimit_entry, addr),
	.key_len = sizeof(__be32),
	.automatic_shrinking = true,
};

static const struct rhashtable_params smtplimit_params6 = {
	.head_offset = offsetof(struct smtplimit_entry, node),
	.key_offset = offsetof(struct smtplimit_entry, addr),
	.key_len = sizeof(struct in6_addr),
	.automatic_shrinking = true,
};

static unsigned int smtplimit_family_index(u8 family)
{
	return family == NFPROTO_IPV6;
}

static struct kmem_cache *smtplimit_cache(const struct smtplimit_table *t)
{
	return smtplimit_is_ipv4(t) ? smtplimit_cache4 : smtplimit_cache6;
}

int smtplimit_caches_create(void)
{
	/* The rcu_head shares tat's memory rather than growing the entry. */
	BUILD_BUG_ON(sizeof(spinlock_t) == 4 &&
		     offsetof(struct smtplimit_entry, addr) + sizeof(__be32) > 40);
	smtplimit_wq = alloc_workqueue("xt_smtplimit", WQ_UNBOUND, 0);
	if (!smtplimit_wq)
		return -ENOMEM;
	smtplimit_cache4 = kmem_cache_create("xt_smtplimit_ipv4",
					     offsetof(struct smtplimit_entry, addr) +
					     sizeof(__be32), 0, 0, NULL);
	if (!smtplimit_cache4)
		goto destroy_wq;
	smtplimit_cache6 = kmem_cache_create("xt_smtplimit_ipv6",
					     sizeof(struct smtplimit_entry),
					     0, 0, NULL);
	if (!smtplimit_cache6)
		goto destroy_cache4;
	return 0;

destroy_cache4:
	kmem_cache_destroy(smtplimit_cache4);
destroy_wq:
	destroy_workqueue(smtplimit_wq);
	return -ENOMEM;
}

void smtplimit_caches_destroy(void)
{
	destroy_workqueue(smtplimit_wq);	/* teardowns still queued */
	rcu_barrier();		/* smtplimit_free*_rcu still pending */
	kmem_cache_destroy(smtplimit_cache6);
	kmem_cache_destroy(smtplimit_cache4);
}

/*
 * Entries of a table of a non-initial user namespace are charged to the
 * memory cgroup of the process that created the table, whoever's packet or
 * write makes them: in softirq there is no current task to charge, so the
 * memcg saved at creation is made the active one around the allocation.
 * The slab uncharges an entry when it is freed.
 */
struct smtplimit_entry *smtplimit_entry_alloc(const struct smtplimit_table *t,
					      gfp_t gfp)
{
	struct smtplimit_entry *e;
	struct mem_cgroup *old;

	if (!t->memcg)
		return kmem_cache_alloc(smtplimit_cache(t), gfp);
	old = set_active_memcg(t->memcg);
	e = kmem_cache_alloc(smtplimit_cache(t), gfp | __GFP_ACCOUNT);
	set_active_memcg(old);
	return e;
}

void smtplimit_entry_free_unused(const struct smtplimit_table *t,
				 struct smtplimit_entry *e)
{
	kmem_cache_free(smtplimit_cache(t), e);
}

static void smtplimit_free4_rcu(struct rcu_head *head)
{
	kmem_cache_free(smtplimit_cache4,
			container_of(head, struct smtplimit_entry, rcu));
}

static void smtplimit_free6_rcu(struct rcu_head *head)
{
	kmem_cache_free(smtplimit_cache6,
			container_of(head, struct smtplimit_entry, rcu));
}

/* Lookup */

struct smtplimit_entry *
smtplimit_lookup(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup(&t->ht, key, smtplimit_params4);
	return rhashtable_lookup(&t->ht, key, smtplimit_params6);
}

struct smtplimit_entry *
smtplimit_lookup_live(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	struct smtplimit_entry *e = smtplimit_lookup(t, key);

	return e && !READ_ONCE(e->dead) ? e : NULL;
}

/*
 * Call @visit on each entry of the table until it returns false. Only RCU
 * is held, and it is dropped every SMTPLIMIT_WALK_BATCH entries, so the
 * caller must be free to sleep; no bucket lock is held across entries. A
 * walk meets every entry present throughout at least once, some twice: see
 * the proc read.
 */
void smtplimit_walk(struct smtplimit_table *t,
		    bool (*visit)(struct smtplimit_table *t,
				  struct smtplimit_entry *e, void *arg),
		    void *arg)
{
	struct rhashtable_iter iter;
	struct smtplimit_entry *e;
	unsigned int walked = 0;

	rhashtable_walk_enter(&t->ht, &iter);
	rhashtable_walk_start(&iter);
	while ((e = rhashtable_walk_next(&iter))) {
		if (IS_ERR(e))		/* -EAGAIN: resized, the walk goes on */
			continue;
		if (!visit(t, e, arg))
			break;
		if (++walked % SMTPLIMIT_WALK_BATCH == 0) {
			rhashtable_walk_stop(&iter);
			cond_resched();
			rhashtable_walk_start(&iter);
		}
	}
	rhashtable_walk_stop(&iter);
	rhashtable_walk_exit(&iter);
}

/* Entries */

/* The mask of a prefix of @len bits over @words 32-bit words. */
void smtplimit_prefix_mask(unsigned int len, unsigned int words,
			   __be32 *mask)
{
	unsigned int i;

	for (i = 0; i < words; i++, len = len > 32 ? len - 32 : 0)
		mask[i] = inet_make_mask(min(len, 32U));
}

static struct smtplimit_entry *
smtplimit_ht_insert(struct smtplimit_table *t, struct smtplimit_entry *e)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
							 smtplimit_params4);
	return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
						 smtplimit_params6);
}

/*
 * Insert @e, allocated with a place taken for it, as the source @key with
 * debt until @tat, @banned or not, held as the caller set e->held. Returns
 * @e, or the entry another CPU inserted for the same source first (then @e
 * is freed and its place given back), or NULL when the table had no memory.
 */
struct smtplimit_entry *
smtplimit_entry_insert(struct smtplimit_table *t, struct smtplimit_entry *e,
		       const union smtplimit_addr *key, u64 tat, bool banned)
{
	struct smtplimit_entry *old;

	spin_lock_init(&e->lock);
	e->tat = tat;
	e->passed = 0;
	e->denied = 0;
	e->dead = false;
	e->banned = banned;
	if (smtplimit_is_ipv4(t))
		e->addr.ip = key->ip;
	else
		e->addr.ip6 = key->ip6;

	old = smtplimit_ht_insert(t, e);
	if (!old) {
		this_cpu_inc(t->stats->created);
		return e;
	}
	/* @e was never visible to anyone: free it at once. */
	kmem_cache_free(smtplimit_cache(t), e);
	smtplimit_place_release(t);
	return IS_ERR(old) ? NULL : old;
}

/* A ban keeps its entry from eviction while the debt is beyond @tolerance. */
static bool smtplimit_ban_holds(const struct smtplimit_entry *e, u64 debt,
				u64 tolerance)
{
	return READ_ONCE(e->banned) && debt > tolerance;
}

/*
 * Unhash @e, if @how allows (see enum smtplimit_kill), and free it after a
 * grace period. Marking it dead under its lock first means exactly one
 * caller unhashes it, and no attempt is charged to an entry on its way out;
 * a ban is checked there too, as the lockless reads that chose @e are only
 * hints. The caller accounts for the place it held.
 */
bool smtplimit_entry_kill(struct smtplimit_table *t,
			  struct smtplimit_entry *e, u64 now,
			  enum smtplimit_kill how)
{
	bool take;
	int err;

	spin_lock_bh(&e->lock);
	switch (how) {
	case SMTPLIMIT_KILL_FULL:
		take = smtplimit_is_full(e->tat, now);
		break;
	case SMTPLIMIT_KILL_EVICT:
		take = !smtplimit_ban_holds(e, smtplimit_debt(e->tat, now),
					    READ_ONCE(t->tolerance));
		break;
	default:
		take = true;
		break;
	}
	/* A proc write holds its entries until it is done (smtplimit_write.c). */
	take = take && !e->dead && !e->held;
	if (take)
		e->dead = true;
	spin_unlock_bh(&e->lock);
	if (!take)
		return false;

	if (smtplimit_is_ipv4(t))
		err = rhashtable_remove_fast(&t->ht, &e->node, smtplimit_params4);
	else
		err = rhashtable_remove_fast(&t->ht, &e->node, smtplimit_params6);
	WARN_ON_ONCE(err);
	call_rcu(&e->rcu, smtplimit_is_ipv4(t) ? smtplimit_free4_rcu :
						 smtplimit_free6_rcu);
	return true;
}

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
		cap = min(cap, READ_ONCE(smtplimit_userns_total_entries));
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
				READ_ONCE(smtplimit_userns_total_entries)) >= 0)
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
static bool smtplimit_place_take(struct smtplimit_table *t, u64 now)
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
			       READ_ONCE(smtplimit_userns_total_entries) -
			       atomic_read(&smtplimit_userns_entries));
	/* Reserved places count in the shared caps: the larger of the two. */
	pc.found = max(min(table, max(shared, reserved)), 0);

	if (pc.found < need)
		smtplimit_walk(t, smtplimit_places_count_visit, &pc);
	return pc.found >= need;
}

/*
 * Track a new source, with a full bucket, in place of an evicted one when
 * the table or the netns is at its maximum. NULL when no place or memory
 * could be had: the caller then judges the attempt untracked.
 */
struct smtplimit_entry *
smtplimit_entry_create(struct smtplimit_table *t,
		       const union smtplimit_addr *key, u64 now)
{
	struct smtplimit_entry *e;

	e = smtplimit_entry_alloc(t, GFP_ATOMIC | __GFP_NOWARN);
	if (!e)
		return NULL;
	if (!smtplimit_place_take(t, now)) {
		kmem_cache_free(smtplimit_cache(t), e);
		return NULL;
	}
	e->held = false;
	return smtplimit_entry_insert(t, e, key, now, false);
}

/* Sweeps and GC */

static bool smtplimit_in_prefix(const struct smtplimit_table *t,
				const union smtplimit_addr *addr,
				const struct smtplimit_sweep *sw)
{
	unsigned int i, words = smtplimit_is_ipv4(t) ? 1 : 4;

	for (i = 0; i < words; i++)
		if ((addr->ip6.s6_addr32[i] & sw->mask->ip6.s6_addr32[i]) !=
		    sw->prefix->ip6.s6_addr32[i])
			return false;
	return true;
}

static bool smtplimit_sweep_visit(struct smtplimit_table *t,
				  struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_sweep *sw = arg;

	if ((!sw->prefix || smtplimit_in_prefix(t, &e->addr, sw)) &&
	    smtplimit_entry_kill(t, e, sw->now, sw->owing_too ?
				 SMTPLIMIT_KILL_ANY : SMTPLIMIT_KILL_FULL)) {
		smtplimit_place_release(t);
		sw->killed++;
	}
	return true;
}

/* Unhash the entries @sw selects; returns how many. */
unsigned int smtplimit_sweep(struct smtplimit_table *t,
			     struct smtplimit_sweep *sw)
{
	sw->killed = 0;
	smtplimit_walk(t, smtplimit_sweep_visit, sw);
	return sw->killed;
}

static void smtplimit_gc(struct work_struct *work)
{
	struct smtplimit_table *t =
		container_of(work, struct smtplimit_table, gc_work.work);
	struct smtplimit_sweep full = { .now = smtplimit_now() };

	if (!SMTPLIMIT_MUTANT_IS(8))
		this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	queue_delayed_work(system_power_efficient_wq, &t->gc_work,
			   SMTPLIMIT_GC_INTERVAL);
}

/* Tables */

struct smtplimit_table *
smtplimit_table_find(struct smtplimit_net *sn, u8 family, const char *name)
{
	struct smtplimit_table *t;

	hlist_for_each_entry(t, &sn->tables, node)
		if (t->family == family && strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

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

static void smtplimit_trim(struct smtplimit_table *t)
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

/* The table's rule's rate and bucket, consistent with each other. */
u32 smtplimit_table_rate(struct smtplimit_table *t,
			 struct smtplimit_bucket *bucket)
{
	u32 rate;

	spin_lock_bh(&t->rule_lock);
	rate = t->rate;
	*bucket = t->bucket;
	spin_unlock_bh(&t->rule_lock);
	return rate;
}

/*
 * Whether rule @a is stricter than @b: a lower rate, then a smaller burst,
 * then strict. A total order on what makes a bucket, so that the table's
 * rule does not depend on the order of its rules.
 */
static bool smtplimit_rule_stricter(const struct xt_smtplimit_priv *a,
				    const struct xt_smtplimit_priv *b)
{
	if (a->rate != b->rate)
		return a->rate < b->rate;
	if (a->bucket.burst != b->bucket.burst)
		return a->bucket.burst < b->bucket.burst;
	return a->bucket.strict && !b->bucket.strict;
}

/*
 * The table's parameters follow the set of its rules, whatever their order:
 * the strictest rule's rate, burst and strictness (the header's, and those
 * of "+ADDR"), and the largest maximum. There is no commit hook: checkentry
 * adds rules that an abort then destroys, and destroy runs after a commit
 * or an abort on both backends. So only destroy (@may_lower) lowers the
 * maximum and evicts down to it, full entries first; checkentry only raises
 * it. An aborted or refused change so leaves the parameters as they were
 * once its rules are destroyed, and has evicted nothing.
 */
void smtplimit_table_follow_rules(struct smtplimit_table *t, bool may_lower)
{
	const struct xt_smtplimit_priv *p, *rule = NULL;
	struct smtplimit_sweep full = { .now = smtplimit_now() };
	u32 most = 0;

	list_for_each_entry(p, &t->rules, node) {
		most = max(most, p->max);
		if (!rule || smtplimit_rule_stricter(p, rule))
			rule = p;
	}
	if (SMTPLIMIT_MUTANT_IS(11) && !may_lower) {
		/* The newest rule's maximum, at once, as before. */
		most = list_last_entry(&t->rules, struct xt_smtplimit_priv,
				       node)->max;
		may_lower = true;
	}
	/* Clamped, not refused: a host's ruleset loads in a container too. */
	if (t->userns && !SMTPLIMIT_MUTANT_IS(14))
		most = min(most, READ_ONCE(smtplimit_userns_max_entries));
	spin_lock_bh(&t->rule_lock);
	t->rate = rule->rate;
	t->bucket = rule->bucket;
	spin_unlock_bh(&t->rule_lock);
	WRITE_ONCE(t->tolerance, rule->bucket.tolerance);
	if (!may_lower) {
		WRITE_ONCE(t->max, max(t->max, most));
		return;
	}
	WRITE_ONCE(t->max, most);
	if (atomic_read(&t->count) > most)
		this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	if (atomic_read(&t->count) > most)
		smtplimit_trim(t);
}

struct smtplimit_table *
smtplimit_table_create(struct smtplimit_net *sn, struct net *net, u8 family,
		       const struct xt_smtplimit_mtinfo *info)
{
	struct proc_dir_entry *dir = sn->proc_dir[smtplimit_family_index(family)];
	kuid_t uid = make_kuid(net->user_ns, 0);
	kgid_t gid = make_kgid(net->user_ns, 0);
	struct smtplimit_table *t;
	int err = -ENOMEM;

	if (!dir)
		return ERR_PTR(-ENOENT);
	t = kzalloc(sizeof(*t), GFP_KERNEL_ACCOUNT);
	if (!t)
		return ERR_PTR(-ENOMEM);
	t->stats = alloc_percpu(struct smtplimit_stats);
	if (!t->stats)
		goto free_table;
	err = rhashtable_init(&t->ht, family == NFPROTO_IPV4 ?
				      &smtplimit_params4 : &smtplimit_params6);
	if (err)
		goto free_stats;

	INIT_LIST_HEAD(&t->rules);
	INIT_DEFERRABLE_WORK(&t->gc_work, smtplimit_gc);
	mutex_init(&t->write_mutex);
	mutex_init(&t->snap_mutex);
	spin_lock_init(&t->rule_lock);
	t->sn = sn;
	t->net = net;
	t->userns = net->user_ns != &init_user_ns;
	if (t->userns)
		t->memcg = get_mem_cgroup_from_mm(current->mm);
	t->family = family;
	t->srcmask = info->srcmask;
	smtplimit_prefix_mask(info->srcmask, family == NFPROTO_IPV4 ? 1 : 4,
			      t->mask.ip6.s6_addr32);
	strscpy(t->name, info->name, sizeof(t->name));

	t->pde = proc_create_data(t->name, 0644, dir, &smtplimit_proc_ops, t);
	if (!t->pde) {
		err = -ENOMEM;
		goto destroy_ht;
	}
	if (uid_valid(uid) && gid_valid(gid))
		proc_set_user(t->pde, uid, gid);

	hlist_add_head(&t->node, &sn->tables);
	queue_delayed_work(system_power_efficient_wq, &t->gc_work,
			   SMTPLIMIT_GC_INTERVAL);
	return t;

destroy_ht:
	mem_cgroup_put(t->memcg);
	rhashtable_destroy(&t->ht);
free_stats:
	free_percpu(t->stats);
free_table:
	kfree(t);
	return ERR_PTR(err);
}

static void smtplimit_entry_free_at_destroy(void *ptr, void *cache)
{
	kmem_cache_free(cache, ptr);
}

/*
 * Teardown. smtplimit_mutex is global and, on iptables-nft, every rule's
 * checkentry first waits for the one work item running the destroys of all
 * namespaces (nft_compat_wait_for_destructors()), so a destroy must wait for
 * nothing: it only unlinks the table. The table's proc name must stay taken
 * until its file is gone, or a new table of that name in the same netns
 * would fail to create its file (the race of xt_hashlimit's "unregister proc
 * file before releasing mutex"): the unlinked table waits on sn->dying, and
 * checkentry of a new table of its name waits for it there. Removing the
 * file waits for its readers, so it is done, and the table freed, by
 * smtplimit_table_teardown() on smtplimit_wq. The netns exit flushes
 * smtplimit_wq before it removes the directories, so a teardown's dir and sn
 * outlive it.
 */
static DECLARE_WAIT_QUEUE_HEAD(smtplimit_name_freed);
static unsigned long smtplimit_names_freed;	/* smtplimit_mutex; names freed */

static bool smtplimit_dying(struct smtplimit_net *sn, u8 family,
			    const char *name)
{
	struct smtplimit_table *t;

	hlist_for_each_entry(t, &sn->dying, node)
		if (t->family == family && strcmp(t->name, name) == 0)
			return true;
	return false;
}

int smtplimit_table_wait_name(struct smtplimit_net *sn, u8 family,
			      const char *name)
{
	unsigned long freed;
	int err;

	while (smtplimit_dying(sn, family, name)) {
		freed = smtplimit_names_freed;
		mutex_unlock(&smtplimit_mutex);
		/* A reader may hold the old file for long: let iptables go. */
		err = wait_event_interruptible(smtplimit_name_freed,
					       READ_ONCE(smtplimit_names_freed) != freed);
		mutex_lock(&smtplimit_mutex);
		if (err)
			return -EINTR;
	}
	return 0;
}

void smtplimit_table_free(struct smtplimit_table *t)
{
	smtplimit_proc_table_exit(t);	/* its file is gone: no reader to come */
	cancel_delayed_work_sync(&t->gc_work);
	atomic_sub(atomic_read(&t->count), &t->sn->entries);
	if (t->userns)
		atomic_sub(atomic_read(&t->count), &smtplimit_userns_entries);
	rhashtable_free_and_destroy(&t->ht, smtplimit_entry_free_at_destroy,
				    smtplimit_cache(t));
	free_percpu(t->stats);
	mem_cgroup_put(t->memcg);
	mutex_destroy(&t->write_mutex);
	mutex_destroy(&t->snap_mutex);
	kfree(t);
}

/* On smtplimit_wq: the proc file (waiting for its readers), then the rest. */
static void smtplimit_table_teardown(struct work_struct *work)
{
	struct smtplimit_table *t =
		container_of(work, struct smtplimit_table, teardown);

	/* Mutant 16: the whole teardown under the global mutex again. */
	if (SMTPLIMIT_MUTANT_IS(16))
		mutex_lock(&smtplimit_mutex);
	remove_proc_entry(t->name, t->dir);
	if (!SMTPLIMIT_MUTANT_IS(16))
		mutex_lock(&smtplimit_mutex);
	hlist_del(&t->node);
	WRITE_ONCE(smtplimit_names_freed, smtplimit_names_freed + 1);
	if (!SMTPLIMIT_MUTANT_IS(16))
		mutex_unlock(&smtplimit_mutex);
	wake_up_all(&smtplimit_name_freed);
	smtplimit_table_free(t);
	if (SMTPLIMIT_MUTANT_IS(16))
		mutex_unlock(&smtplimit_mutex);
}

struct smtplimit_table *smtplimit_table_unlink(struct smtplimit_table *t)
{
	hlist_del(&t->node);
	t->dir = t->sn->proc_dir[smtplimit_family_index(t->family)];
	if (!t->dir)		/* the netns exit removed the file */
		return t;
	hlist_add_head(&t->node, &t->sn->dying);
	INIT_WORK(&t->teardown, smtplimit_table_teardown);
	queue_work(smtplimit_wq, &t->teardown);
	return NULL;
}

void smtplimit_teardowns_flush(void)
{
	flush_workqueue(smtplimit_wq);
}
