# SPDX-License-Identifier: GPL-2.0
"""The GCRA oracle: how many attempts of one source xt_smtplimit lets pass.

It replays kernel/smtplimit_rate.c in Python, at the kernel's own
granularity: time in clock units of 2^-shift jiffy (one second between 2^24
and 2^25 units), T = 86400 s / rate rounded to the nearest unit, an attempt
conforming when TAT - now <= (burst - 1) * T, then TAT = max(TAT, now -
slack) + T with slack = min(1 jiffy, T - 1); strict, a denied attempt adds T
to the debt up to 2 * burst * T. A new entry starts with TAT = now, and the
GC frees an entry once TAT <= now (README, Semantics and Strict mode).

A test knows only when it sent each attempt, not the jiffy the kernel
stamped the SYN with, so bounds() returns the least and the most attempts
that pass over every stamping consistent with the recorded times: each
attempt stamped at some instant between the start of its send and the
return of its connect() (the SYN is judged before the answer comes back),
read on a jiffy clock of unknown phase, in the order sent, with or without a
GC between attempts that find the bucket full. A limiter at another rate
falls outside these bounds; tests/unit/test_gcra.py shows by how much.
"""
import math
import os
import re

SECONDS_PER_DAY = 86400
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": SECONDS_PER_DAY}


def parse_rate(text):
    """'2/s', '2/h', '5' (per second): attempts per day, as the kernel has it."""
    m = re.fullmatch(r"(\d+)(?:/([a-z]+))?", text)
    if not m:
        raise ValueError(f"bad rate {text!r}")
    unit = [u for u in UNITS if u.startswith(m.group(2) or "second")]
    if len(unit) != 1:
        raise ValueError(f"bad unit in {text!r}")
    return int(m.group(1)) * (SECONDS_PER_DAY // UNITS[unit[0]])


def guest_hz():
    """The running kernel's HZ, from its config: Debian ships it in /boot;
    tests/check-kernels names a debug kernel's ($XT_KERNEL_CONFIG)."""
    for path in (os.environ.get("XT_KERNEL_CONFIG", ""),
                 f"/boot/config-{os.uname().release}"):
        if not path:
            continue
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=")[1])
        except OSError:
            pass
    raise RuntimeError("CONFIG_HZ not found: pass hz explicitly")


class Bucket:
    """One rule's bucket, as smtplimit_clock_init and smtplimit_bucket_init
    derive it. rate is per day (parse_rate) or a string like '2/s'."""

    def __init__(self, rate, burst, strict=False, hz=250):
        if isinstance(rate, str):
            rate = parse_rate(rate)
        shift = 0
        while (hz << shift) < (1 << 24):
            shift += 1
        self.hz = hz
        self.units_per_jiffy = 1 << shift
        self.units_per_sec = hz << shift
        day = SECONDS_PER_DAY * self.units_per_sec
        self.interval = (day + rate // 2) // rate
        self.tolerance = (burst - 1) * self.interval
        self.slack = min(self.units_per_jiffy, self.interval - 1)
        self.burst = burst
        self.strict = strict

    def attempt(self, tat, now):
        """smtplimit_attempt: (passed, new TAT)."""
        debt = tat - now
        if debt > self.tolerance:
            floor = 2 * self.burst * self.interval
            if self.strict and debt < floor:
                tat = now + min(debt + self.interval, floor)
            return False, tat
        if debt < -self.slack:
            tat = now - self.slack
        return True, tat + self.interval

    def tokens_milli(self, tat, now):
        """smtplimit_view's tokens column, in thousandths."""
        debt = max(tat - now, 0)
        q, r = divmod(debt, self.interval)
        return self.burst * 1000 - (q * 1000 + -(-r * 1000 // self.interval))

    def replay(self, jiffies):
        """Attempts passed by a fresh source stamped at these jiffies, no GC
        running between them: the exact count, no jitter."""
        tat, n = None, 0
        for j in jiffies:
            now = j * self.units_per_jiffy
            if tat is None:
                tat = now
            ok, tat = self.attempt(tat, now)
            n += ok
        return n


def _stamps(bucket, attempts, jitter):
    """Candidate jiffies of each attempt: from its start to its end, widened
    by the clock's unknown phase (one jiffy) and @jitter jiffies each way."""
    out = []
    for a in attempts:
        t0, t1 = (a, a) if isinstance(a, (int, float)) else a
        lo = math.floor(t0 * bucket.hz) - jitter
        hi = math.floor(t1 * bucket.hz) + 1 + jitter
        out.append(range(lo, hi + 1))
    return out


def _prune(states, most):
    """Keep the states that can still decide the bound: for the most
    passes, per last jiffy, those no other state beats with a TAT no later
    and as many passes; for the least, the mirror image. Sound because a
    later TAT never lets more attempts pass afterwards, and delaying TAT by
    T costs at most one pass (GCRA is monotone); strict mode is replayed
    without pruning."""
    best = {}
    for j, tat, n in states:
        best.setdefault(j, []).append((tat, n))
    out = set()
    for j, lst in best.items():
        lst.sort(key=lambda s: (s[0], -s[1]) if most else (-s[0], s[1]))
        edge = None
        for tat, n in lst:
            if edge is None or (n > edge if most else n < edge):
                out.add((j, tat, n))
                edge = n
    return out


def bounds(rate, burst, attempts, strict=False, hz=250, jitter=1, max_states=200000):
    """[least, most] attempts of one fresh source that pass.

    @attempts: for each attempt in the order sent, its time in seconds on
    any clock running with the kernel's (CLOCK_MONOTONIC), as a number or
    as (start, end) of its send. @jitter: jiffies of extra slack each way.
    """
    b = Bucket(rate, burst, strict, hz)
    per = _stamps(b, attempts, jitter)
    result = []
    for most in ((None,) if strict else (False, True)):
        states = {(None, None, 0)}
        for cand in per:
            if cand is not per[0] and max(j for j, _, _ in states) <= cand[0]:
                # No stamp can come before the last: the order binds nothing,
                # and states differing only in their last jiffy merge.
                states = {(cand[0], t, n) for _, t, n in states}
                states = states if most is None else _prune(states, most)
            nxt = set()
            for last, tat, n in states:
                for j in cand:
                    if last is not None and j < last:
                        continue
                    now = j * b.units_per_jiffy
                    starts = {tat}
                    if tat is None or tat <= now:
                        # Freed by the GC (a new entry at now) or not yet.
                        starts = {now, tat if tat is not None else now}
                    for s in starts:
                        ok, t = b.attempt(s, now)
                        nxt.add((j, t, n + ok))
            states = nxt if most is None else _prune(nxt, most)
            if len(states) > max_states:
                raise RuntimeError(f"{len(states)} states: too many attempts to bound")
        counts = [n for _, _, n in states]
        result.append(max(counts) if most else min(counts))
        if most is None:  # strict: one unpruned replay holds both ends
            result.append(max(counts))
    return tuple(result)

def check(rate, burst, attempts, passed, strict=False, hz=250, jitter=1):
    """None if @passed is within bounds(), else a sentence saying why not."""
    lo, hi = bounds(rate, burst, attempts, strict, hz, jitter)
    if lo <= passed <= hi:
        return None
    return (f"{passed} of {len(attempts)} passed, the oracle allows {lo} to {hi} "
            f"(rate {rate}, burst {burst}{', strict' if strict else ''}, HZ {hz})")
