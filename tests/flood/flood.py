#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""A flood of 1,000,000 distinct IPv4 sources against an smtplimit table
with the default htable-max of 65536, inside the test guest.

pktgen in the client namespace sends one UDP packet from each address of
240.0.0.0/12 in turn (src_min..src_max, sequential) to the server. The
server's table "flood" is shared by two rules: UDP at one per --refill
seconds, burst 1 (a flood source's bucket is full again that long after its
packet, so GC empties the table soon after the flood) and TCP SYNs at 2/hour
burst 2 (the legitimate clients, from 192.0.2.0/24):

    -A INPUT -p udp -m smtplimit --smtplimit-name flood --smtplimit 360/hour --smtplimit-burst 1 -j DROP
    -A INPUT -p tcp --syn -m smtplimit --smtplimit-name flood --smtplimit 2/h --smtplimit-burst 2 -j ACCEPT
    -A INPUT -p tcp --syn -j REJECT --reject-with tcp-reset
    -A INPUT -p udp -j DROP

Checked: the table never holds more than its maximum (the proc header,
sampled during the flood); a source tracked before the flood keeps its exact
state, or comes back with a full bucket if it was evicted; a new source
arriving during the flood gets its burst; the rules' packet counters add up
to what pktgen sent; no whole read lists a source twice; after the flood
GC empties the table and memory (Slab + VmallocUsed + Percpu) returns to
within 5% of its level before.

The table fills only if pktgen sends more than 65536 packets per refill
period: the default 10 s wants 6,554 pps. Where pktgen is slower (a KASAN
kernel under TCG reaches about 850 pps) a longer --refill fills it. On a
KASAN kernel the memory check is skipped and says so: KASAN's quarantine
holds freed objects back, which kmemleak's scan after rmmod covers instead.

    flood.py [--count N] [--ratep PPS] [--refill SECONDS] [--backend legacy|nft]

Prints the figures, then "flood: N passed, N failed".
"""
import argparse
import os
import re
import sys
import time

from lib import proc
from lib.memstat import meminfo, vmalloc_by_caller
from lib.netns import SRV4, enter
from lib.results import Results
from lib.traffic import Smtp, pktgen_setup, pktgen_start, pktgen_state

PROC = "/proc/thread-self/net/ipt_smtplimit/flood"
OLD, NEW = "192.0.2.10", "192.0.2.11"


def jiffies():
    """The kernel's jiffies (the module's clock) and CLOCK_MONOTONIC."""
    with open("/proc/timer_list") as f:
        for line in f:
            if line.startswith("jiffies:"):
                return int(line.split()[1]), time.monotonic()
    return 0, time.monotonic()


def header():
    """The proc file's first line only (cheap during the flood)."""
    return proc.read_header(PROC)


def read_proc():
    """The figures are those of the moment the read starts: a read of tens
    of thousands of lines takes seconds here."""
    return proc.read(PROC)


def kasan():
    """KASAN quarantines freed objects, so Slab lags behind frees."""
    with open("/proc/kallsyms") as f:
        return any(" kasan_quarantine_put" in line for line in f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--ratep", type=int, default=20000)
    ap.add_argument("--refill", type=int, default=10,
                    help="seconds until a flood source's bucket is full again")
    ap.add_argument("--backend", default="legacy", choices=("legacy", "nft"))
    a = ap.parse_args()
    if a.refill <= 0 or 3600 % a.refill:
        ap.error("--refill must divide an hour")
    quarantine = kasan()
    res = Results("flood")
    check = res.check

    env = Smtp(a.backend)
    try:
        ipt = env.ipt
        ipt("-A", "INPUT", "-p", "udp", "-m", "smtplimit", "--smtplimit-name", "flood",
            "--smtplimit", f"{3600 // a.refill}/hour", "--smtplimit-burst", "1", "-j", "DROP")
        ipt("-A", "INPUT", "-p", "tcp", "--syn", "-m", "smtplimit", "--smtplimit-name",
            "flood", "--smtplimit", "2/h", "--smtplimit-burst", "2", "-j", "ACCEPT")
        ipt("-A", "INPUT", "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset")
        ipt("-A", "INPUT", "-p", "udp", "-j", "DROP")
        mac = env.mac()

        # Enter the server's namespace for the proc file (threads follow).
        enter(env.srv)

        check("old source: 2 connections before the flood", env.connect(OLD, 2) == "PP")
        before = read_proc()
        old_row = before.rows[f"{OLD}/32"]
        print(f"# before: {before.header}", flush=True)
        print(f"# old source {OLD}: {old_row}", flush=True)

        # pktgen, in the client's namespace: each address of 240.0.0.0/12 in turn
        pktgen_setup(env.cli, mac, SRV4, a.count, "240.0.0.0", "240.15.255.255",
                     ratep=a.ratep)
        # The baseline after pktgen's set-up: add_device vzallocs its flows.
        mem0, m0 = meminfo()
        vm0 = vmalloc_by_caller()
        j0 = jiffies()
        samples, maxima, full_reads = [], set(), []
        t0 = time.monotonic()
        flood = pktgen_start(env.cli)
        new_letters = None
        while flood.poll() is None:
            h = header()
            n, m = proc.entries(h)
            samples.append(n)
            maxima.add(m)
            # Once the table is full, a new legitimate source arrives.
            if new_letters is None and (n >= m or time.monotonic() - t0 > 30):
                new_letters = env.connect(NEW, 3, timeout=3)
                print(f"# new source {NEW} during the flood at {n}/{m} entries: "
                      f"{new_letters}", flush=True)
            if len(samples) % 10 == 5:
                # A whole read: are the listed sources distinct, and how many?
                with open(PROC) as f:
                    lines = f.read().splitlines()
                rows = [l.split()[0] for l in lines[2:]]
                full_reads.append((lines[0].split("entries ")[1].split()[0], len(rows),
                                   len(set(rows))))
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        over = [n for n in samples if n > 65536]
        if over:
            print(f"# samples over the maximum: {over}", flush=True)
        print("# whole reads during the flood (header entries, rows, distinct rows): "
              + ", ".join(f"{h} {r} {d}" for h, r, d in full_reads), flush=True)
        check("no source listed twice in a read", full_reads and all(r == d for _, r, d in full_reads))
        # The header's count of a read is checked with the samples. Its rows
        # may exceed the maximum: a read copies the table while the flood
        # evicts and inserts, so an evicted source and its successor may
        # both be listed.
        pg = pktgen_state(env.cli)
        sofar, errors, result = pg["sofar"], pg["errors"], pg["result"]
        sent = sofar - errors
        print(f"# pktgen: {sofar} packets, {errors} errors in {elapsed:.1f} s: {result}",
              flush=True)
        after = read_proc()
        print(f"# after the flood: {after.header}", flush=True)
        print(f"# entries sampled: max {max(samples, default=0)} over {len(samples)} samples, "
              f"maximum {sorted(maxima)}", flush=True)

        check("the table never held more than its maximum",
              samples and max(samples) <= 65536 and maxima == {65536},
              f"max {max(samples, default=0)}")
        check("the table filled up (the flood reached the maximum)",
              max(samples, default=0) >= 65536 or int(after.header["evicted"]) > 0,
              f"evicted {after.header['evicted']}")
        check("a new source during the flood got its burst",
              new_letters is not None and new_letters.startswith("PP"), new_letters)
        row = after.rows.get(f"{OLD}/32")
        j1 = jiffies()
        hz = 250
        try:
            with open(f"/boot/config-{os.uname().release}") as f:
                hz = int(re.search(r"^CONFIG_HZ=(\d+)", f.read(), re.M).group(1))
        except (OSError, AttributeError):
            pass
        jdt = (j1[0] - j0[0]) / hz
        print(f"# clocks over the flood: jiffies {jdt:.1f} s, CLOCK_MONOTONIC "
              f"{j1[1] - j0[1]:.1f} s (HZ {hz})", flush=True)
        if row is not None:
            # The module counts time in jiffies: judge full_s by them.
            dt = (after.time - before.time) - (j1[1] - j0[1]) + jdt
            check("the old source kept its exact state",
                  (row["passed"], row["denied"]) == (old_row["passed"], old_row["denied"])
                  and abs(old_row["full_s"] - row["full_s"] - dt) <= 2
                  and abs(old_row["next_s"] - row["next_s"] - dt) <= 2,
                  f"{old_row} -> {row} in {dt:.0f} s")
            check("the old source is still limited", env.connect(OLD, 1, timeout=3) == "R")
        else:
            check("the old source, evicted, comes back with a full bucket",
                  env.connect(OLD, 3, timeout=3) == "PPR")

        counts = env.counters()
        judged = counts[0] + counts[3]
        udp_hdr = None
        print(f"# rule counters: udp limit {counts[0]}, tcp limit {counts[1]}, "
              f"reset {counts[2]}, udp drop {counts[3]}; sent {sent}", flush=True)
        drops = env.ns(env.srv, "ip", "-s", "-s", "link", "show", "veth0").stdout
        print("# server veth0:\n" + "\n".join("#   " + l for l in drops.splitlines()[-8:]))
        check("every flood packet was judged by the rule (counters add up to pktgen's)",
              judged == sent, f"{judged} judged, {sent} sent")
        h = after.header
        udp_hdr = int(h["passed"]) + int(h["denied"])
        print(f"# header: passed {h['passed']} denied {h['denied']} (sum {udp_hdr}), "
              f"evicted {h['evicted']}, untracked {h['untracked']}, "
              f"created {h.get('created')}, gc_freed {h.get('gc_freed')}", flush=True)

        # After the flood: GC frees every flood source once its bucket is
        # full again. The legitimate ones (debt of an hour) are forgotten
        # by hand.
        end = time.monotonic() + a.refill + 60
        while time.monotonic() < end:
            rest = [k for k in read_proc().rows if not k.startswith("192.0.2.")]
            if not rest:
                break
            time.sleep(1)
        check("GC freed every flood source", not rest,
              f"{len(rest)} left after {time.monotonic() - end + a.refill + 60:.0f} s")
        with open(PROC, "w") as f:
            f.write("-192.0.2.0/24\n")
        n = proc.entries(header())[0]
        check("the table is empty", n == 0, f"{n} entries")
        mem1, m1 = meminfo()
        deadline = time.monotonic() + (0 if quarantine else 60)
        while mem1 > mem0 * 1.05 and time.monotonic() < deadline:
            time.sleep(2)
            mem1, m1 = meminfo()
        vm1 = vmalloc_by_caller()
        grown = sorted(((vm1.get(k, 0) - vm0.get(k, 0), k) for k in set(vm0) | set(vm1)),
                       reverse=True)
        print("# vmalloc grown by caller: " + ", ".join(
            f"{k} {d // 1024:+d} kB" for d, k in grown[:5] if d), flush=True)
        kb = {k: (m0[k] >> 10, m1[k] >> 10) for k in ("Slab", "VmallocUsed", "Percpu")}
        print(f"# memory (Slab+VmallocUsed+Percpu): before {mem0 >> 10} kB, after {mem1 >> 10} kB "
              f"({100.0 * (mem1 - mem0) / mem0:+.1f}%); "
              + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in kb.items()), flush=True)
        if quarantine:
            print("# skip - memory back within 5%: KASAN's quarantine holds freed "
                  "objects (kmemleak scans after rmmod)", flush=True)
        else:
            check("memory back within 5% of its level before the flood",
                  mem1 <= mem0 * 1.05)
    finally:
        env.close()
    return res.total()


if __name__ == "__main__":
    sys.exit(main())
