/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Faults built in on purpose, for the tests: `make module SMTPLIMIT_MUTANT=N`
 * builds mutant N (Kbuild passes -DSMTPLIMIT_MUTANT=N), so that a test
 * suite can be shown to fail on each. Never set in a shipped build: there
 * SMTPLIMIT_MUTANT is 0, every SMTPLIMIT_MUTANT_IS(n) is a constant false
 * and the compiler drops the faulty branches, leaving the same code as
 * without them. They are plain C conditions, not #if blocks, so that each
 * mutant compiles in every build and cannot rot. A mutant build says so at
 * load (pr_warn) and in modinfo (smtplimit_mutant).
 *
 * The mutants, all on the kernel side (smtplimit_rate.c, which userspace
 * compiles too, has none):
 * 0. none;
 * 1. the rate doubled: the packet path judges with T halved;
 * 2. burst off by one: a full bucket passes burst + 1 attempts at once;
 * 3. no eviction: in a full table every new source is judged untracked;
 * 4. a ban ignored on the packet path: a source banned by "+ADDR SECONDS"
 *    is judged as a fresh source;
 * 5. a refused proc write applies its first line: a write with a bad line
 *    after a good first one applies the first before it fails;
 * 6. strict mode never charging: a denied attempt in a strict table costs
 *    nothing;
 * 7. the IPv6 srcmask ignored: the packet path keys IPv6 sources by the
 *    full /128;
 * 8. GC never freeing: full entries stay until evicted, forgotten or their
 *    table goes;
 * 9. a cut line applied: the unterminated last line of a proc write is
 *    applied as a command at the end of that write, not kept for the next;
 * 10. a ban dropped by the sweep: down to a lowered maximum, bans that hold
 *    are evicted like any entry;
 * 11. an aborted restore that evicts: checkentry applies the new rule's
 *    maximum at once and evicts down to it, as destroy does;
 * 12. ">ADDR S" shortening a ban: it sets the ban to S even when a longer
 *    one is there;
 * 13. a transaction applied at close: a proc file closed after "{" without
 *    "}" applies the commands held instead of dropping them;
 * 14. the userns ceiling not applied: a table of a non-initial user
 *    namespace keeps the htable-max its rules ask for;
 * 15. each reader its own copy: a proc reader never shares the table's
 *    cached copy, so every open file reading holds one;
 * 16. the teardown under the global mutex: a destroyed table's proc file
 *    is removed (waiting for its readers) and the table freed while
 *    smtplimit_mutex is held, stalling rule changes in every netns;
 * 17. no global userns cap: the tables of non-initial user namespaces
 *    together track more than userns_total_entries;
 * 18. no memcg charge: a userns table's entries are charged to nobody's
 *    memory cgroup (from softirq) or to the writer's (from a proc write);
 * 19. a write keeps the shared copy: a read begun after a proc write
 *    returned may list the table as it was before.
 */
#ifndef _SMTPLIMIT_MUTANT_H
#define _SMTPLIMIT_MUTANT_H

#ifndef SMTPLIMIT_MUTANT
#define SMTPLIMIT_MUTANT 0
#endif
#if SMTPLIMIT_MUTANT < 0 || SMTPLIMIT_MUTANT > 19
#error "SMTPLIMIT_MUTANT: no such mutant (0 to 19)"
#endif

#define SMTPLIMIT_MUTANT_IS(n) (SMTPLIMIT_MUTANT == (n))

#endif /* _SMTPLIMIT_MUTANT_H */
