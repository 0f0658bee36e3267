// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the token-bucket arithmetic and the rate parser: the
 * same kernel/smtplimit_rate.c and userspace/smtplimit_parse.c that the
 * module and the iptables extension are built from.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netfilter/xt_smtplimit.h>
#include "tap.h"
#include "../../kernel/smtplimit_rate.h"
#include "../../userspace/smtplimit_parse.h"


static const unsigned int hz_values[] = { 100, 250, 300, 1000 };

static struct smtplimit_clock clock_for(unsigned int hz)
{
	struct smtplimit_clock c;

	smtplimit_clock_init(&c, hz);
	return c;
}

static struct smtplimit_bucket rule_for(const struct smtplimit_clock *c,
					u32 rate, u32 burst)
{
	struct smtplimit_bucket b;

	smtplimit_bucket_init(&b, c, rate, burst, false);
	return b;
}

static struct smtplimit_bucket strict_for(const struct smtplimit_clock *c,
					  u32 rate, u32 burst)
{
	struct smtplimit_bucket b;

	smtplimit_bucket_init(&b, c, rate, burst, true);
	return b;
}

static unsigned int attempts(u64 *tat, u64 now,
			     const struct smtplimit_bucket *r, unsigned int n)
{
	unsigned int ok = 0;

	while (n--)
		ok += smtplimit_attempt(tat, now, r);
	return ok;
}

static void test_clock(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(hz_values) / sizeof(hz_values[0]); i++) {
		struct smtplimit_clock c = clock_for(hz_values[i]);

		CHECK(c.units_per_sec >= (1ULL << 24) &&
		      c.units_per_sec < (1ULL << 25),
		      "HZ=%u: %llu units per second within [2^24, 2^25)",
		      hz_values[i], c.units_per_sec);
	}
}

static void expect_rate(const char *text, int err, u32 rate)
{
	u32 got = 0;
	int ret = smtplimit_parse_rate(text, &got);

	if (err)
		CHECK(ret == err, "parse \"%s\" refused with %d (got %d)",
		      text, err, ret);
	else
		CHECK(ret == 0 && got == rate,
		      "parse \"%s\" = %u/day (got %d, %u)", text, rate, ret,
		      got);
}

static void test_parse(void)
{
	expect_rate("2/h", 0, 48);
	expect_rate("2/hour", 0, 48);
	expect_rate("2/ho", 0, 48);
	expect_rate("60/min", 0, 86400);
	expect_rate("60/m", 0, 86400);
	expect_rate("1/day", 0, 1);
	expect_rate("1/d", 0, 1);
	expect_rate("5", 0, 5 * 86400);
	expect_rate("5/s", 0, 5 * 86400);
	expect_rate("10000/second", 0, XT_SMTPLIMIT_RATE_MAX);
	expect_rate("864000000/day", 0, XT_SMTPLIMIT_RATE_MAX);
	expect_rate("10001/s", -ERANGE, 0);
	expect_rate("600001/minute", -ERANGE, 0);
	expect_rate("0/h", -ERANGE, 0);
	expect_rate("0", -ERANGE, 0);
	expect_rate("99999999999999999999999/d", -ERANGE, 0);
	expect_rate("", -EINVAL, 0);
	expect_rate("/h", -EINVAL, 0);
	expect_rate("2/", -EINVAL, 0);
	expect_rate("2/x", -EINVAL, 0);
	expect_rate("2/hours", -EINVAL, 0);
	expect_rate("2/H", -EINVAL, 0);
	expect_rate("-1/h", -EINVAL, 0);
	expect_rate(" 2/h", -EINVAL, 0);
	expect_rate("2/h ", -EINVAL, 0);
	expect_rate("2.5/h", -EINVAL, 0);
	expect_rate("0x10/h", -EINVAL, 0);
}

static void expect_split(u32 rate, u32 count, const char *unit)
{
	u32 got;
	const char *name = smtplimit_rate_split(rate, &got);

	CHECK(got == count && strcmp(name, unit) == 0,
	      "%u/day saves as %u/%s (got %u/%s)", rate, count, unit, got,
	      name);
}

static void test_split(void)
{
	u32 rate;

	expect_split(48, 2, "hour");
	expect_split(86400, 1, "second");
	expect_split(3, 3, "day");
	expect_split(1440, 1, "minute");
	expect_split(2880, 2, "minute");
	expect_split(XT_SMTPLIMIT_RATE_MAX, 10000, "second");
	expect_split(36, 36, "day");	/* 1.5/hour has no whole hourly count */
	/* What save prints, parse reads back as the same rate. */
	for (rate = 1; rate < 200000; rate += 7) {
		char text[32];
		u32 count, back;
		const char *unit = smtplimit_rate_split(rate, &count);

		snprintf(text, sizeof(text), "%u/%s", count, unit);
		if (smtplimit_parse_rate(text, &back) || back != rate) {
			CHECK(0, "round trip of %u/day through \"%s\"", rate,
			      text);
			return;
		}
	}
	CHECK(1, "save form of every 7th rate below 200000/day parses back");
}

/* The seed's figures: 2/hour, burst 2, as in the README's proc example. */
static void test_view(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket r = rule_for(&c, 48, 2);
	u64 t0 = 1000 * c.units_per_sec, tat = t0;
	struct smtplimit_view v;

	CHECK(attempts(&tat, t0, &r, 6) == 2, "seed: 2 of 6 attempts pass");
	smtplimit_view(tat, t0 + 4 * c.units_per_sec, &r, &c, &v);
	CHECK(v.tokens_milli == 2 && v.next_s == 1796 && v.full_s == 3596,
	      "after 4 s: tokens 0.002 next_s 1796 full_s 3596 (got %lld"
	      " %llu %llu)", v.tokens_milli, v.next_s, v.full_s);

	tat = t0;
	CHECK(attempts(&tat, t0, &r, 1) == 1, "one attempt");
	smtplimit_view(tat, t0 + 36 * c.units_per_sec, &r, &c, &v);
	CHECK(v.tokens_milli == 1020 && v.next_s == 0 && v.full_s == 1764,
	      "one attempt 36 s ago: tokens 1.020 next_s 0 full_s 1764 (got %lld"
	      " %llu %llu)", v.tokens_milli, v.next_s,
	      v.full_s);

	smtplimit_view(tat, t0 + 3600 * c.units_per_sec, &r, &c, &v);
	CHECK(v.tokens_milli == 2000 && v.next_s == 0 && v.full_s == 0 &&
	      smtplimit_is_full(tat, t0 + 3600 * c.units_per_sec),
	      "an hour later the bucket is full and the entry is absent");
}

/*
 * Long-run exactness: attempts much faster than the rate, over @seconds,
 * pass burst + seconds * rate / 86400 times, within 0.1%.
 */
static void expect_long_run(unsigned int hz, u32 rate, u32 burst,
			    u64 seconds, unsigned int per_jiffy,
			    unsigned int jiffy_step)
{
	struct smtplimit_clock c = clock_for(hz);
	struct smtplimit_bucket r = rule_for(&c, rate, burst);
	u64 j, start = 5000, got = 0, tat = start << c.shift;
	double want = burst + (double)seconds * rate / 86400.0;

	for (j = start; j <= start + seconds * hz; j += jiffy_step)
		got += attempts(&tat, j << c.shift, &r, per_jiffy);
	CHECK(got >= want * 0.999 - 1 && got <= want * 1.001 + 1,
	      "HZ=%u rate %u/day burst %u over %llu"
	      " s: %llu passed, want %.0f within 0.1%%", hz, rate, burst,
	      seconds, got, want);
}

static void test_long_run(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(hz_values) / sizeof(hz_values[0]); i++) {
		unsigned int hz = hz_values[i];

		/* 10000/second needs burst >= rate/HZ; take 10000/HZ + 1. */
		expect_long_run(hz, XT_SMTPLIMIT_RATE_MAX, 10000 / hz + 1, 100,
				10000 / hz + 5, 1);
		expect_long_run(hz, 9950 * 86400, 9950 / hz + 1, 100,
				9950 / hz + 5, 1);
		expect_long_run(hz, 7 * 86400, 1, 2000, 1, 1);
		expect_long_run(hz, 48, 2, 30 * 86400, 1, hz);	/* 2/hour */
		/* hashlimit gets 1/day with burst 3 wrong. */
		expect_long_run(hz, 1, 3, 400 * 86400, 1, hz * 60);
		expect_long_run(hz, 1, 1, 400 * 86400, 1, hz * 60);
	}
}

static void test_burst(void)
{
	struct smtplimit_clock c = clock_for(1000);
	struct smtplimit_bucket slow = rule_for(&c, 1, XT_SMTPLIMIT_BURST_MAX);
	struct smtplimit_bucket fast = rule_for(&c, XT_SMTPLIMIT_RATE_MAX,
				    XT_SMTPLIMIT_BURST_MAX);
	struct smtplimit_view v;
	u64 now = 77 * c.units_per_sec, tat = now;

	CHECK(attempts(&tat, now, &slow, XT_SMTPLIMIT_BURST_MAX + 10) ==
	      XT_SMTPLIMIT_BURST_MAX,
	      "1/day burst 1000000: exactly 1000000 pass at once");
	smtplimit_view(tat, now, &slow, &c, &v);
	CHECK(v.tokens_milli == 0 &&
	      v.full_s == (u64)XT_SMTPLIMIT_BURST_MAX * 86400 &&
	      v.next_s == 86400,
	      "1/day burst 1000000 drained: tokens 0, full in 1000000 days, next in a day (got %lld"
	      " %llu %llu)", v.tokens_milli, v.full_s,
	      v.next_s);
	now += 86400 * c.units_per_sec;
	CHECK(attempts(&tat, now, &slow, 3) == 1,
	      "a day later exactly one more passes");

	now = 5 * c.units_per_sec;
	tat = now;
	CHECK(attempts(&tat, now, &fast, XT_SMTPLIMIT_BURST_MAX + 10) ==
	      XT_SMTPLIMIT_BURST_MAX,
	      "10000/second burst 1000000: 1000000 pass at once");
}

/* The slack is below T: a full bucket never passes more than burst at once. */
static void test_full_bucket_is_burst(void)
{
	static const u32 rates[] = { 1, 48, 86400, 7 * 86400, 999 * 86400,
				     XT_SMTPLIMIT_RATE_MAX };
	static const u32 bursts[] = { 1, 2, 5, 1000 };
	unsigned int h, i, k, bad = 0;

	for (h = 0; h < sizeof(hz_values) / sizeof(hz_values[0]); h++) {
		struct smtplimit_clock c = clock_for(hz_values[h]);

		for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
			for (k = 0; k < sizeof(bursts) / sizeof(bursts[0]); k++) {
				struct smtplimit_bucket b =
					rule_for(&c, rates[i], bursts[k]);
				u64 now = 1000 * c.units_per_sec;
				u64 tat = now - 77 * c.units_per_sec;

				if (attempts(&tat, now, &b, bursts[k] + 50) !=
				    bursts[k])
					bad++;
			}
		}
	}
	CHECK(bad == 0, "a long-full bucket passes exactly burst at once, every HZ, rate and burst (%u wrong)",
	      bad);
}

static void test_idle(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket r = rule_for(&c, 1, 3);
	struct smtplimit_view v;
	u64 now = 300 * c.units_per_sec, tat = now;

	CHECK(attempts(&tat, now, &r, 5) == 3, "1/day burst 3: 3 pass");
	now += 365ULL * 86400 * c.units_per_sec;
	smtplimit_view(tat, now, &r, &c, &v);
	CHECK(v.tokens_milli == 3000 && v.next_s == 0 && v.full_s == 0,
	      "a year idle: full bucket of 3");
	CHECK(attempts(&tat, now, &r, 5) == 3, "a year idle: 3 pass again");
	now += 200ULL * 365 * 86400 * c.units_per_sec;
	CHECK(attempts(&tat, now, &r, 5) == 3, "200 years idle: 3 pass again");
}

/* The clock is mod 2^64: a source's state must survive the wrap. */
static void test_wrap(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket r = rule_for(&c, 48, 2);
	u64 now = (u64)0 - 10 * c.units_per_sec, tat = now;
	struct smtplimit_view v;

	CHECK(attempts(&tat, now, &r, 6) == 2, "near wrap: 2 of 6 pass");
	now += 20 * c.units_per_sec;		/* past the wrap */
	CHECK(now < 20 * c.units_per_sec, "the clock has wrapped");
	CHECK(attempts(&tat, now, &r, 3) == 0, "after wrap: still denied");
	smtplimit_view(tat, now, &r, &c, &v);
	CHECK(v.next_s == 1780 && v.full_s == 3580,
	      "after wrap: next_s 1780 full_s 3580 (got %llu %llu"
	      ")", v.next_s, v.full_s);
	now += 1800 * c.units_per_sec;
	CHECK(attempts(&tat, now, &r, 3) == 1, "after wrap: one passes after T");

	/* Jiffies past 2^32, as a 32-bit counter would wrap 5 min after boot. */
	now = ((1ULL << 32) - 100) << c.shift;
	tat = now;
	CHECK(attempts(&tat, now, &r, 3) == 2, "jiffies near 2^32: 2 pass");
	now = ((1ULL << 32) + 1800 * 250) << c.shift;
	CHECK(attempts(&tat, now, &r, 3) == 1, "jiffies past 2^32: refilled one");
}

/* A reload with another burst applies the new burst to the same debt. */
static void test_reload(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket two = rule_for(&c, 48, 2), five = rule_for(&c, 48, 5);
	u64 now = 9 * c.units_per_sec, tat = now;

	CHECK(attempts(&tat, now, &two, 4) == 2, "burst 2: 2 pass");
	CHECK(attempts(&tat, now, &five, 5) == 3,
	      "same state under burst 5: 3 more pass");
	CHECK(attempts(&tat, now, &two, 5) == 0,
	      "back under burst 2: none pass");
}

/* Attempts every @every units from @now for @n attempts; returns passes. */
static unsigned int paced(u64 *tat, u64 *now, const struct smtplimit_bucket *b,
			  u64 every, unsigned int n)
{
	unsigned int ok = 0;

	while (n--) {
		ok += smtplimit_attempt(tat, *now, b);
		*now += every;
	}
	return ok;
}

static void test_strict(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket b = strict_for(&c, 48, 2);	/* 2/hour */
	u64 t = b.interval, now = 50 * c.units_per_sec, tat = now;
	struct smtplimit_view v;
	unsigned int ok;

	CHECK(attempts(&tat, now, &b, 2) == 2, "strict: burst 2 passes");
	CHECK(attempts(&tat, now, &b, 1) == 0 && tat - now == 3 * t,
	      "strict: a denied attempt costs T");
	CHECK(attempts(&tat, now, &b, 10) == 0 && tat - now == 4 * t,
	      "strict: debt floors at 2 * burst * T");
	smtplimit_view(tat, now, &b, &c, &v);
	CHECK(v.tokens_milli == -2000 && v.next_s == 5400 && v.full_s == 7200,
	      "strict: tokens -2.000 next_s 5400 full_s 7200 (got %lld %llu %llu)",
	      v.tokens_milli, v.next_s, v.full_s);
	ok = paced(&tat, &now, &b, t / 2, 1000);
	CHECK(ok == 0, "strict: retrying every T/2 never passes (%u passed)", ok);
	ok = paced(&tat, &now, &b, t * 3 / 2, 20);
	CHECK(ok >= 14, "strict: retrying every 1.5 T recovers (%u of 20 passed)",
	      ok);
	ok = paced(&tat, &now, &b, t * 3 / 2, 1000);
	CHECK(ok == 1000, "strict: then every attempt at 1.5 T passes (%u)", ok);

	b = rule_for(&c, 48, 2);
	tat = now;
	attempts(&tat, now, &b, 10);
	CHECK(tat - now == 2 * t, "not strict: denied attempts cost nothing");
}

static void test_ban(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket b = rule_for(&c, 48, 2);	/* 2/hour */
	u64 now = 70 * c.units_per_sec;
	u64 tat = smtplimit_ban(now, &b, &c, 0);
	struct smtplimit_view v;

	smtplimit_view(tat, now, &b, &c, &v);
	CHECK(v.tokens_milli == 0 && v.next_s == 1800 && v.full_s == 3600,
	      "+ADDR: tokens 0, next_s T, full_s burst * T (got %lld %llu %llu)",
	      v.tokens_milli, v.next_s, v.full_s);
	CHECK(!smtplimit_may_pass(tat, now, &b) &&
	      smtplimit_may_pass(tat, now + 1800 * c.units_per_sec, &b),
	      "+ADDR: may pass again after T");
	CHECK(attempts(&tat, now + 1799 * c.units_per_sec, &b, 1) == 0 &&
	      attempts(&tat, now + 1800 * c.units_per_sec, &b, 2) == 1,
	      "+ADDR: one passes after T, not before");

	tat = smtplimit_ban(now, &b, &c, 3600);
	smtplimit_view(tat, now, &b, &c, &v);
	CHECK(v.next_s == 3600 && v.full_s == 5400,
	      "+ADDR 3600: next_s 3600, full_s 3600 + tolerance (got %llu %llu)",
	      v.next_s, v.full_s);
	CHECK(!smtplimit_may_pass(tat, now + 3599 * c.units_per_sec, &b) &&
	      smtplimit_may_pass(tat, now + 3600 * c.units_per_sec, &b),
	      "+ADDR 3600 holds for 3600 s");
	CHECK(attempts(&tat, now + 3599 * c.units_per_sec, &b, 1) == 0 &&
	      attempts(&tat, now + 3600 * c.units_per_sec, &b, 2) == 1,
	      "+ADDR 3600: one passes after 3600 s, then the rate");
	tat = smtplimit_ban(now, &b, &c, XT_SMTPLIMIT_BAN_MAX);
	smtplimit_view(tat, now, &b, &c, &v);
	CHECK(v.next_s == XT_SMTPLIMIT_BAN_MAX, "a ban of a year");
}

/* ">ADDR S", "~ADDR" and "=ADDR S": protocol version 2's arithmetic. */
static void test_protocol2(void)
{
	struct smtplimit_clock c = clock_for(250);
	struct smtplimit_bucket b = rule_for(&c, 48, 2);	/* 2/hour */
	struct smtplimit_bucket s = strict_for(&c, 48, 2);
	u64 sec = c.units_per_sec, now = (u64)-100 * sec;	/* wraps soon */
	u64 tat, ban = smtplimit_ban(now, &b, &c, 3600);
	struct smtplimit_view v;

	CHECK(smtplimit_ms_units(&c, 1500) == sec + sec / 2 &&
	      smtplimit_ms_units(&c, (u64)XT_SMTPLIMIT_BAN_MAX * 1000) ==
	      (u64)XT_SMTPLIMIT_BAN_MAX * sec, "milliseconds in clock units");
	tat = smtplimit_ban_at_least(now, now, &b, &c, 600000);
	smtplimit_view(tat, now, &b, &c, &v);
	CHECK(v.next_s == 600 && v.full_s == 2400,
	      ">ADDR 600 on a full bucket: next_s 600 (got %llu %llu)", v.next_s,
	      v.full_s);
	CHECK(smtplimit_ban_at_least(ban, now, &b, &c, 600000) == ban,
	      ">ADDR 600 keeps a ban of 3600");
	CHECK(smtplimit_ban_at_least(ban, now, &b, &c, 7200500) ==
	      now + 7200 * sec + sec / 2 + b.tolerance, ">ADDR 7200.5 lengthens it");
	tat = now + 4000 * sec;
	CHECK(smtplimit_ban_at_least(tat, now, &b, &c, 1000) == tat,
	      ">ADDR 1 keeps a later full time");

	CHECK(smtplimit_lift(ban, now, &b) == now + 2 * b.interval,
	      "~ADDR: a ban of 3600 keeps an empty bucket's debt");
	smtplimit_view(smtplimit_lift(ban, now, &b), now, &b, &c, &v);
	CHECK(v.tokens_milli == 0 && v.next_s == 1800,
	      "~ADDR: 0 tokens, next in T (got %lld %llu)", v.tokens_milli, v.next_s);
	tat = now + 60 * sec;
	CHECK(smtplimit_lift(tat, now, &b) == tat, "~ADDR keeps a smaller debt");

	tat = smtplimit_set_full(now, now, &b, &c, 1234567);
	CHECK(tat == now + smtplimit_ms_units(&c, 1234567),
	      "=ADDR 1234.567 on a full bucket: full in 1234.567 s");
	CHECK(smtplimit_set_full(ban, now, &b, &c, 1000) == ban,
	      "=ADDR 1 keeps a later full time");
	CHECK(smtplimit_set_full(now, now, &b, &c, 86400000) == now + 2 * b.interval,
	      "=ADDR 86400: capped at burst * T");
	CHECK(smtplimit_set_full(now, now, &s, &c, 86400000) == now + 4 * s.interval,
	      "=ADDR 86400, strict: capped at 2 * burst * T");
	CHECK(smtplimit_set_full(now - 10 * sec, now, &b, &c, 5000) == now + 5 * sec,
	      "=ADDR 5 on a bucket full since: full in 5 s, across the wrap");
}

static void test_interval_precision(void)
{
	unsigned int i, n, worst_n = 0;
	double worst = 0;

	for (i = 0; i < sizeof(hz_values) / sizeof(hz_values[0]); i++) {
		struct smtplimit_clock c = clock_for(hz_values[i]);

		for (n = 1; n <= 10000; n++) {
			u64 t = rule_for(&c, n * 86400, 1).interval;
			double exact = (double)c.units_per_sec / n;
			double err = (t - exact) / exact;

			if (err < 0)
				err = -err;
			if (err > worst) {
				worst = err;
				worst_n = n;
			}
		}
	}
	CHECK(worst < 0.0005, "T rounding error below 0.05%% for N/second (worst %.5f%% at %u/s)",
	      worst * 100, worst_n);
}

static void expect_name(const char *name, int err)
{
	char shown[24];
	size_t i;

	snprintf(shown, sizeof(shown), "%s", name);
	for (i = 0; shown[i]; i++)
		if (shown[i] < ' ' || shown[i] > '~')
			shown[i] = '?';
	CHECK(smtplimit_check_name(name, strlen(name) + 1) == err,
	      "name \"%s\" (%zu bytes) gives %d", shown, strlen(name), err);
}

static void test_names(void)
{
	char name[200];
	char unterminated[XT_SMTPLIMIT_NAME_LEN];

	expect_name("smtp_limit", 0);
	expect_name("a.b-c_D9", 0);
	expect_name("...", 0);
	expect_name("", -EINVAL);
	expect_name(".", -EINVAL);
	expect_name("..", -EINVAL);
	expect_name("a/b", -EINVAL);
	expect_name("a b", -EINVAL);
	expect_name("a\nb", -EINVAL);
	expect_name("caf\xc3\xa9", -EINVAL);
	memset(name, 'x', sizeof(name));
	name[127] = '\0';
	expect_name(name, 0);
	name[127] = 'x';
	name[128] = '\0';
	expect_name(name, -ENAMETOOLONG);
	memset(unterminated, 'x', sizeof(unterminated));
	CHECK(smtplimit_check_name(unterminated, sizeof(unterminated)) ==
	      -ENAMETOOLONG, "128 bytes without NUL: -ENAMETOOLONG");
}

int main(void)
{
	test_clock();
	test_parse();
	test_split();
	test_view();
	test_long_run();
	test_burst();
	test_full_bucket_is_burst();
	test_idle();
	test_wrap();
	test_reload();
	test_strict();
	test_ban();
	test_protocol2();
	test_interval_precision();
	test_names();
	return tap_done("unit");
}
