#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The bench, inside the guest (started by tests/bench/run): xt_smtplimit
against xt_hashlimit, pktgen (IPv4) or tests/bench/send6 (IPv6) in a client
namespace over veth into a server namespace, packets per second through the
server's INPUT chain with no rule, the seed's hashlimit rule, or the
equivalent smtplimit rule.

Needs xt_smtplimit loaded and XTABLES_LIBDIR set (tests/guest-lib.sh).
Writes results.json and its report (lib.benchreport), results.md, to
$XT_VM_OUT. XT_BENCH_QUICK=1: one short round of everything.
"""
import json
import os
import re
import signal
import statistics
import subprocess
import time

from lib.benchreport import COPIES, report
from lib.memstat import meminfo, vmalloc_by_caller
from lib.netns import CLI4, SRV4, SRV6, Pair
from lib import proc
from lib.proc import parse_header
from lib.run import ns, sh
from lib.traffic import pktgen_run, send6

QUICK = os.environ.get("XT_BENCH_QUICK", "") not in ("", "0")
OUT = os.environ.get("XT_VM_OUT", "/tmp")
SRV, CLI = "bsrv", "bcli"

HL = ["-m", "hashlimit", "--hashlimit-upto", "2/h", "--hashlimit-burst", "2",
      "--hashlimit-mode", "srcip", "--hashlimit-name", "b",
      "--hashlimit-htable-expire", "3600000"]
SL = ["-m", "smtplimit", "--smtplimit-upto", "2/h", "--smtplimit-burst", "2",
      "--smtplimit-name", "b"]
SETS = ("none", "hashlimit", "smtplimit")

if QUICK:
    ROUNDS, PKTS, PKTS6 = 1, 4000, 4000
    FLOOD_FILL, BIG, MEM_SRC, GC_N, DUMP_PKTS = 70000, 20000, 20000, 20000, 4000
else:
    ROUNDS, PKTS, PKTS6 = 3, 30000, 20000
    FLOOD_FILL, BIG, MEM_SRC, GC_N, DUMP_PKTS = 100000, 1000000, 100000, 1000000, 20000

T0 = time.monotonic()


def log(*a):
    print(f"[{time.monotonic() - T0:7.1f}s]", *a, flush=True)


def ip2int(a):
    p = [int(x) for x in a.split(".")]
    return p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]


def int2ip(n):
    return ".".join(str(n >> s & 255) for s in (24, 16, 8, 0))


def addr_range(first, n):
    return first, int2ip(ip2int(first) + n - 1)


class Bench:
    def __init__(self):
        self.pair = Pair("legacy", SRV, CLI)
        ns(SRV, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.veth0.rp_filter=0")
        self.mac = self.pair.mac()
        # Processes parked in each namespace: /proc/PID/net is its view.
        self.anchor = {n: subprocess.Popen(["ip", "netns", "exec", n, "sleep", "1d"])
                       for n in (SRV, CLI)}
        time.sleep(0.5)
        sh(["modprobe", "pktgen"])
        sh(["modprobe", "xt_hashlimit"])
        self.perf_data = None   # set: pktgen runs under perf record into it
        self.clear()

    def close(self):
        for p in self.anchor.values():
            p.kill()
            p.wait()
        self.pair.close()

    def procnet(self, n, path):
        return f"/proc/{self.anchor[n].pid}/net/{path}"

    def lines(self, n, path):
        """Lines of a proc file, or -1 if it cannot be read: hashlimit's
        fails with EPERM once one bucket's chain overflows the page."""
        r = ns(n, "wc", "-l", f"/proc/net/{path}", check=False)
        if r.returncode:
            log(f"wc -l {path}: exit {r.returncode}: {r.stderr.strip()}")
            return -1
        return int(r.stdout.split()[0])

    # ---- rules ----
    def ipt(self, *args, v6=False, check=True):
        return self.pair.ipt(*args, v6=v6, check=check)

    def clear(self):
        for v6 in (False, True):
            self.ipt("-F", "INPUT", v6=v6)
            self.ipt("-Z", v6=v6)
            if self.ipt("-L", "pin", "-n", v6=v6, check=False).returncode == 0:
                self.ipt("-F", "pin", v6=v6)
            else:
                self.ipt("-N", "pin", v6=v6)

    def pin(self, rules, v6=False):
        """Keep tables alive between rounds: rules in a chain nothing jumps to."""
        self.ipt("-F", "pin", v6=v6)
        for r in rules:
            self.ipt("-A", "pin", *r, v6=v6)

    def use(self, rule, v6=False, copies=1):
        """@rule alone in INPUT, @copies times (non-terminal, one table):
        under TCG one rule's cost is lost in pktgen's noise, so timed
        rounds multiply it."""
        self.ipt("-F", "INPUT", v6=v6)
        self.ipt("-Z", "INPUT", v6=v6)
        for _ in range(copies if rule else 0):
            self.ipt("-A", "INPUT", *rule, v6=v6)
        # Every set, "none" too, ends in a DROP: no set pays for the ICMP
        # port unreachable that a delivered UDP packet would cost, and
        # what a rule hot-drops never reaches it.
        self.ipt("-A", "INPUT", "-j", "DROP", v6=v6)

    def counters(self, v6=False):
        return self.pair.counters(v6=v6)

    def smtp_header(self, name="b", v6=False):
        path = f"{'ip6t' if v6 else 'ipt'}_smtplimit/{name}"
        with open(self.procnet(SRV, path)) as f:
            h = parse_header(f.readline())[1]
        h["live"] = int(h["entries"].split("/")[0])
        return h

    # ---- traffic ----
    def pktgen(self, count, src_min=CLI4, src_max=CLI4, rnd=False):
        # perf record samples only with a workload in this guest: the run is it.
        perf = (["perf", "record", "-q", "-e", "cpu-clock", "-a", "-F", "2000",
                 "-o", self.perf_data, "--"] if self.perf_data else [])
        return pktgen_run(CLI, self.mac, SRV4, count, src_min, src_max, rnd=rnd,
                          prefix=perf)

    def send6(self, count, nsrc):
        return send6(CLI, self.mac, SRV6, count, nsrc)

    def round(self, rule, send, v6=False, smtp=False, copies=1):
        """One timed run under @rule: pps, rule counters, drops."""
        self.use(rule, v6, copies)
        h0 = self.smtp_header(v6=v6) if smtp else None
        r = send()
        time.sleep(0.2)  # let the backlog drain before counting
        c = self.counters(v6)
        r["matched"] = c[0] if rule else 0
        # Dropped before the final DROP: hashlimit's hot-drops.
        r["dropped"] = r["sent"] - c[-1]
        if smtp:
            h1 = self.smtp_header(v6=v6)
            for k in ("passed", "denied", "untracked", "evicted"):
                r[k] = int(h1[k]) - int(h0[k])
            r["judged"] = r["passed"] + r["denied"]
            r["live"] = h1["live"]
        else:
            r["judged"] = c[-1] if rule else 0
        return r

    def profile(self, name, rules, send, copies=COPIES):
        """One more round of each rule set under perf's cpu-clock sampler on
        every CPU (TCG has no PMU): the busiest kernel symbols, idle excluded.
        Unlike the timed rounds, no proc header is read around it."""
        prof = {}
        for s, rule in rules.items():
            self.perf_data = os.path.join(OUT, f"perf-{name}-{s}.data")
            try:
                r = self.round(rule, send, copies=copies)
            finally:
                data, self.perf_data = self.perf_data, None
            out = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "-n",
                                  "--sort", "dso,sym"], capture_output=True, text=True)
            if out.returncode == 0:
                prof[s] = top_symbols(out.stdout)
            else:
                prof[s] = {"error": f"perf report status {out.returncode}: {out.stderr.strip()[-300:]}"}
            prof[s]["pps"] = r["pps"]
            if os.path.exists(data):
                os.unlink(data)
            log(f"{name} profile {s}: {prof[s]}")
        self.use(None)
        return prof

    def rounds(self, name, rules, send, v6=False, rounds=ROUNDS, copies=COPIES):
        """Interleaved rounds of every rule set; returns the per-set list."""
        res = {s: [] for s in rules}
        for s, rule in rules.items():  # untimed: warm TCG's translation cache
            self.round(rule, send, v6, smtp=(s == "smtplimit"), copies=copies)
        for i in range(rounds):
            for s, rule in rules.items():
                r = self.round(rule, send, v6, smtp=(s == "smtplimit"), copies=copies)
                r["copies"] = copies
                res[s].append(r)
                log(f"{name} round {i + 1} {s}: {r['pps']:.0f} pps, sent {r['sent']},"
                    f" matched {r['matched']}, dropped {r['dropped']}")
        self.use(None, v6)
        return res


IDLE = re.compile(r"idle|safe_halt|mwait")
# The functions of each module (perf names module symbols from kallsyms,
# under [kernel.kallsyms], so they are told apart by name).
OWN = {"xt_hashlimit": re.compile(r"(hashlimit|dsthash|htable|hash_dst|rateinfo|user2)"),
       "xt_smtplimit": re.compile(r"smtplimit")}


def top_symbols(report, n=10):
    """perf report lines ("12.3%  456  [kernel.kallsyms]  [k] sym") to the
    top @n symbols as shares of the samples outside the idle loop, plus
    each module's own functions' total share."""
    rows = []
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\S+\s+\[.\]\s+(\S+)", line)
        if m and not IDLE.search(m.group(2)):
            rows.append((int(m.group(1)), m.group(2)))
    busy = sum(c for c, _ in rows) or 1
    return {"busy_samples": busy,
            "top": [(sym, round(100 * c / busy, 1)) for c, sym in sorted(rows, reverse=True)[:n]],
            "modules": {mod: round(100 * sum(c for c, sym in rows if own.match(sym)) / busy, 1)
                        for mod, own in OWN.items()}}


def med(rs, key="pps"):
    return statistics.median(r[key] for r in rs)


def costs(res, copies=COPIES):
    """Median pps per set and the cost of one rule per packet over 'none',
    in ns: the rounds ran @copies rules."""
    base = med(res["none"])
    out = {"pps": {s: med(res[s]) for s in res}, "copies": copies}
    out["cost_ns"] = {s: (1 / out["pps"][s] - 1 / base) * 1e9 / copies
                      for s in res if s != "none"}
    return out


def slab(name):
    d = f"/sys/kernel/slab/{name}"
    r = {"cache": os.path.basename(os.path.realpath(d))}
    for k in ("object_size", "slab_size", "objects"):
        try:
            with open(f"{d}/{k}") as f:
                r[k] = int(f.read().split()[0])
        except OSError:
            r[k] = None
    return r


def main():
    results = {"quick": QUICK, "kernel": os.uname().release,
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "rounds": ROUNDS, "ncpu": os.cpu_count()}
    b = Bench()
    try:
        run_all(b, results)
    finally:
        b.close()
        results["elapsed_s"] = round(time.monotonic() - T0)
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    md = report(results)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)


def run_all(b, R):
    sc = R["scenarios"] = {}

    # 1. One hot source.
    log("scenario 1: one hot source")
    b.clear()
    b.pin([HL, SL])
    res = b.rounds("s1", {"none": None, "hashlimit": HL, "smtplimit": SL},
                   lambda: b.pktgen(PKTS))
    sc["1"] = dict(costs(res), raw=res,
                   profile=b.profile("s1", {"hashlimit": HL, "smtplimit": SL},
                                     lambda: b.pktgen(PKTS)))

    # 2. 10,000 distinct sources, in order.
    log("scenario 2: 10,000 sources")
    b.clear()
    b.pin([HL, SL])
    lo, hi = addr_range("240.0.0.1", 10000)
    res = b.rounds("s2", {"none": None, "hashlimit": HL, "smtplimit": SL},
                   lambda: b.pktgen(PKTS, lo, hi))
    sc["2"] = dict(costs(res), raw=res)

    # 3. A flood from random sources in 240.0.0.0/4, tables at their defaults,
    # filled first by an untimed flood.
    log("scenario 3: random flood")
    b.clear()
    b.pin([HL, SL])
    flood = lambda n: b.pktgen(n, "240.0.0.1", "255.255.255.254", rnd=True)
    fill = {}
    for s, rule in (("hashlimit", HL), ("smtplimit", SL)):
        fill[s] = b.round(rule, lambda: flood(FLOOD_FILL), smtp=(s == "smtplimit"))
        log(f"s3 fill {s}: {fill[s]}")
    b.use(None)
    # One rule: hashlimit's first copy would hot-drop and skip the others.
    res = b.rounds("s3", {"none": None, "hashlimit": HL, "smtplimit": SL},
                   lambda: flood(PKTS), copies=1)
    prof = b.profile("s3", {"hashlimit": HL, "smtplimit": SL}, lambda: flood(PKTS), copies=1)
    hl_entries = b.lines(SRV, "ipt_hashlimit/b")
    sc["3"] = dict(costs(res, copies=1), raw=res, fill=fill, hashlimit_entries=hl_entries,
                   smtplimit_header=b.smtp_header(), profile=prof)

    # Memory per tracked source: 100,000 distinct sources into a fresh table.
    log("memory per source")
    mem = R["memory"] = {}
    for s, rule in (("hashlimit", HL + ["--hashlimit-htable-max", "1048576"]),
                    ("smtplimit", SL + ["--smtplimit-htable-max", "1048576"])):
        b.clear()
        b.use(rule)
        before, m0 = meminfo()
        vm0 = vmalloc_by_caller()
        lo, hi = addr_range("240.1.0.0", MEM_SRC)
        r = b.pktgen(MEM_SRC, lo, hi)
        time.sleep(2)
        after, m = meminfo()
        vm1 = vmalloc_by_caller()
        grown = {k: vm1.get(k, 0) - vm0.get(k, 0) for k in set(vm0) | set(vm1)}
        if s == "hashlimit":
            n = b.lines(SRV, "ipt_hashlimit/b")
        else:
            n = b.smtp_header()["live"]
        mem[s] = dict(before=before, after=after, tracked=n, sent=r["sent"],
                      per_source=(after - before) / max(n, 1),
                      parts={k: m[k] - m0[k] for k in ("Slab", "VmallocUsed", "Percpu")},
                      vmalloc_grown={k: v for k, v in sorted(grown.items(), key=lambda x: -abs(x[1]))[:4]
                                     if v})
        if s == "smtplimit":
            mem[s]["slab"] = slab("xt_smtplimit_ipv4")
        else:
            mem[s]["slab"] = slab("xt_hashlimit")
        log(f"memory {s}: {mem[s]}")
    b.clear()

    # 4. 1,000,000 sources already tracked.
    log(f"scenario 4: {BIG} sources tracked")
    hl4 = HL + ["--hashlimit-htable-max", "1048576"]
    sl4 = SL + ["--smtplimit-htable-max", "1048576"]
    b.pin([hl4, sl4])
    lo, hi = addr_range("240.16.0.1", BIG)
    fill = {}
    for s, rule in (("smtplimit", sl4), ("hashlimit", hl4)):
        t = time.monotonic()
        fill[s] = b.round(rule, lambda: b.pktgen(BIG, lo, hi), smtp=(s == "smtplimit"))
        fill[s]["wall_s"] = round(time.monotonic() - t, 1)
        log(f"s4 fill {s}: {fill[s]}")
    hl_entries = b.lines(SRV, "ipt_hashlimit/b")
    res = b.rounds("s4", {"none": None, "hashlimit": hl4, "smtplimit": sl4},
                   lambda: b.pktgen(PKTS, lo, hi, rnd=True))
    sc["4"] = dict(costs(res), raw=res, fill=fill, hashlimit_entries=hl_entries,
                   smtplimit_header=b.smtp_header())

    # pps through the smtplimit rule while a loop reads the big proc file.
    log("proc dump under load")
    t = time.monotonic()
    nlines = b.lines(SRV, "ipt_smtplimit/b")
    one_dump = time.monotonic() - t
    dump = {"with": [], "without": []}
    for i in range(ROUNDS):
        for mode in ("without", "with"):
            loop = None
            if mode == "with":
                # On the CPU pktgen's thread (kpktgend_0) does not use:
                # sharing its CPU would slow the generator, not the rule.
                loop = subprocess.Popen(
                    ["ip", "netns", "exec", SRV, "taskset", "-c", "1", "sh", "-c",
                     "while :; do cat /proc/net/ipt_smtplimit/b >/dev/null; done"],
                    start_new_session=True)
                time.sleep(1)
            try:
                r = b.round(sl4, lambda: b.pktgen(DUMP_PKTS, lo, hi, rnd=True), smtp=True,
                            copies=COPIES)
            finally:
                if loop:
                    os.killpg(loop.pid, signal.SIGKILL)
                    loop.wait()
            dump[mode].append(r)
            log(f"dump round {i + 1} {mode}: {r['pps']:.0f} pps")
    R["dump"] = dict(lines=nlines, one_dump_s=round(one_dump, 2),
                     pps_with=med(dump["with"]), pps_without=med(dump["without"]),
                     raw=dump)
    b.clear()
    time.sleep(1)

    # 5. IPv6, 10,000 sources in distinct /64s.
    log("scenario 5: IPv6, 10,000 /64s")
    b.pin([HL, SL], v6=True)
    res = b.rounds("s5", {"none": None, "hashlimit": HL, "smtplimit": SL},
                   lambda: b.send6(PKTS6, 10000), v6=True)
    sc["5"] = dict(costs(res), raw=res)
    b.clear()

    # GC: a table of GC_N entries, all becoming full at one moment (bans
    # that end together, rate 10000/s so the bucket refills at once), then
    # the time until the GC has freed them.
    log(f"GC of {GC_N} entries")
    R["gc"] = gc_bench(b)
    log(f"gc: {R['gc']}")
    b.clear()


def gc_bench(b):
    rule = ["-m", "smtplimit", "--smtplimit-upto", "10000/s", "--smtplimit-burst", "2",
            "--smtplimit-name", "g", "--smtplimit-htable-max", "1048576"]
    b.pin([rule])
    time.sleep(3)
    base = slab("xt_smtplimit_ipv4")
    lead = 10 if QUICK else 200
    end = time.monotonic() + lead
    first = ip2int("240.32.0.1")
    path = b.procnet(SRV, "ipt_smtplimit/g")
    t0 = time.monotonic()

    def chunks():
        """Bans of the GC_N sources, about 120 kB a write, each ending
        when the bench's lead time does."""
        i = 0
        while i < GC_N:
            secs = max(1, round(end - time.monotonic()))
            lines = []
            size = 0
            while i < GC_N and size < 120000:
                line = f"+{int2ip(first + i)} {secs}\n"
                lines.append(line)
                size += len(line)
                i += 1
            yield "".join(lines).encode()

    refused = [got for written, got in proc.write_each(path, chunks()) if not written]
    if refused:
        raise RuntimeError(f"GC bench: bans refused: {refused[:3]}")
    write_s = time.monotonic() - t0
    h = b.smtp_header("g")
    filled = h["live"]
    peak = slab("xt_smtplimit_ipv4")
    # Poll until every entry is gone: live count 0 and the slab back down.
    target = (base["objects"] or 0) + GC_N // 100
    t_live0 = t_slab = None
    deadline = end + (60 if QUICK else 240)
    samples = []
    while time.monotonic() < deadline:
        now = time.monotonic()
        h = b.smtp_header("g")
        s = slab("xt_smtplimit_ipv4")
        samples.append((round(now - end, 1), h["live"], s["objects"], int(h.get("gc_freed", 0))))
        if t_live0 is None and h["live"] == 0:
            t_live0 = now - end
        if now > end and s["objects"] is not None and s["objects"] <= target and t_slab is None:
            t_slab = now - end
        if t_live0 is not None and t_slab is not None:
            break
        time.sleep(0.5)
    return dict(n=GC_N, write_s=round(write_s, 1), lead_s=lead, live_after_write=filled,
                slab_base=base, slab_peak=peak, live0_after_s=t_live0,
                slab_freed_after_s=t_slab, gc_freed=int(b.smtp_header("g").get("gc_freed", 0)),
                samples=samples[::max(1, len(samples) // 40)])


if __name__ == "__main__":
    main()
