# SPDX-License-Identifier: GPL-2.0
"""The bench's report: bench/results.md, the tables and notes, from the
figures tests/bench/guest.py writes to results.json. The guest writes it
after the run; on the host it is made again from a results.json with

    python3 -m lib.benchreport bench/results.json [> bench/results.md]

(PYTHONPATH=tests). The judged targets (ratios, bytes per source, pps
during a proc dump) live here."""
import json
import sys

# Rules per timed round in scenarios 1, 2, 4, 5 and the proc-dump rounds
# (one table, non-terminal): see tests/bench/guest.py's Bench.use.
COPIES = 16


def ratio(a, b):
    return a / b if b > 0 else float("inf")


def report(R):
    sc = R.get("scenarios", {})
    L = [f"# xt_smtplimit vs xt_hashlimit bench{' (QUICK: one short round, figures not judged)' if R['quick'] else ''}",
         "",
         f"Kernel {R['kernel']}, QEMU TCG guest with {R['ncpu']} vCPUs, {R['date']};"
         f" {R['rounds']} interleaved round(s) of each rule set, medians; run took {R.get('elapsed_s')} s.",
         "pps: packets per second through the server's INPUT chain (pktgen's rate, IPv4;"
         " send6's rate, IPv6). Cost per packet = 1/pps - 1/pps_none, divided by the number"
         f" of copies of the rule in INPUT: {COPIES} (one table, non-terminal) in scenarios 1, 2,"
         " 4, 5 and the proc-dump rounds, where one rule's cost would be lost in pktgen's noise"
         " under TCG; one in scenario 3, where hashlimit's first copy hot-drops. Every rule set"
         " ends with -j DROP, so that none pays for ICMP port unreachable replies.",
         "Absolute figures under TCG on a shared host are noisy: read the ratios.",
         "",
         "| scenario | none pps | hashlimit pps | smtplimit pps | hashlimit cost ns | smtplimit cost ns | smtplimit/hashlimit | target | met |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    names = {"1": "1. one hot source", "2": "2. 10,000 sources", "3": "3. random flood, default tables",
             "4": "4. 1M sources tracked", "5": "5. IPv6, 10,000 /64s"}
    targets = {"1": 1.0, "3": 1.5, "4": 0.33}
    for k in ("1", "2", "3", "4", "5"):
        if k not in sc:
            L.append(f"| {names[k]} | not run | | | | | | | |")
            continue
        s = sc[k]
        p, c = s["pps"], s["cost_ns"]
        rt = ratio(c["smtplimit"], c["hashlimit"])
        tgt = targets.get(k)
        met = ""
        if c["hashlimit"] <= 0:
            met = "n/a: hashlimit cost within noise"
        elif tgt is not None:
            ok = rt <= tgt
            if k == "3":
                judged_all = all(r["judged"] == r["sent"] for r in s["raw"]["smtplimit"])
                ok = ok and judged_all
            met = "yes" if ok else "**no**"
        L.append(f"| {names[k]} | {p['none']:.0f} | {p['hashlimit']:.0f} | {p['smtplimit']:.0f} |"
                 f" {c['hashlimit']:.0f} | {c['smtplimit']:.0f} | {'-' if c['hashlimit'] <= 0 else '%.2f' % rt} |"
                 f" {'<= %.2f' % tgt if tgt else '-'} | {met} |")
    if "3" in sc:
        s = sc["3"]
        L += ["", "Scenario 3, per timed round (sent / judged / dropped):", ""]
        for m in ("hashlimit", "smtplimit"):
            rs = s["raw"][m]
            L.append(f"- {m}: " + "; ".join(
                f"{r['sent']} / {r['judged']} / {r['dropped']}" for r in rs)
                + (f" (rule counter {', '.join(str(r['matched']) for r in rs)})"))
        f = s["fill"]
        L.append(f"- before the rounds, an untimed flood of {f['hashlimit']['sent']} packets:"
                 f" hashlimit judged {f['hashlimit']['judged']}, dropped {f['hashlimit']['dropped']};"
                 f" smtplimit judged {f['smtplimit']['judged']}, dropped {f['smtplimit']['dropped']},"
                 f" evicted {f['smtplimit'].get('evicted')}, untracked {f['smtplimit'].get('untracked')}")
        L.append(f"- tables after: hashlimit {s['hashlimit_entries']} entries;"
                 f" smtplimit entries {s['smtplimit_header']['entries']},"
                 f" evicted {s['smtplimit_header'].get('evicted')}, untracked {s['smtplimit_header'].get('untracked')}")
    for k in ("1", "3"):
        prof = sc.get(k, {}).get("profile")
        if not prof:
            continue
        L += ["", f"Profile of scenario {k}: one more round of each rule set under `perf record -e"
              " cpu-clock -a` (TCG has no PMU), shares of the samples outside the idle loop:", ""]
        for m, p in prof.items():
            if "error" in p:
                L.append(f"- {m}: perf failed: {p['error']}")
                continue
            L.append(f"- {m} ({p['pps']:.0f} pps, {p['busy_samples']} samples; the modules' own"
                     " functions: " + ", ".join(f"{d} {v}%" for d, v in p["modules"].items())
                     + "): " + ", ".join(f"{sym} {v}%" for sym, v in p["top"]))
    if "4" in sc:
        f = sc["4"]["fill"]
        L += ["", f"Scenario 4 fill (untimed, one packet per source): smtplimit {f['smtplimit']['pps']:.0f} pps"
              f" ({f['smtplimit']['wall_s']} s), hashlimit {f['hashlimit']['pps']:.0f} pps ({f['hashlimit']['wall_s']} s);"
              f" tracked: smtplimit {sc['4']['smtplimit_header']['entries']}, hashlimit "
              + (str(sc['4']['hashlimit_entries']) if sc['4']['hashlimit_entries'] >= 0 else
                 "unknown: reading its proc file fails with EPERM (dl_seq_show() returns -1"
                 " when one bucket's chain does not fit the seq_file buffer)") + "."]
    L += ["", "| measure | hashlimit | smtplimit | target | met |", "| --- | ---: | ---: | --- | --- |"]
    mem = R.get("memory")
    if mem:
        h, s = mem["hashlimit"], mem["smtplimit"]
        L.append(f"| bytes per tracked IPv4 source (Slab+VmallocUsed+Percpu) | {h['per_source']:.0f} |"
                 f" {s['per_source']:.0f} | <= 64 | {'yes' if s['per_source'] <= 64 else '**no**'} |")
    d = R.get("dump")
    if d:
        rt = d["pps_with"] / d["pps_without"]
        L.append(f"| smtplimit pps during a loop reading the {d['lines'] - 2}-entry proc file / without |"
                 f" - | {rt:.2f} ({d['pps_with']:.0f}/{d['pps_without']:.0f}) | >= 0.90 | {'yes' if rt >= 0.9 else '**no**'} |")
    g = R.get("gc")
    if g:
        L.append(f"| GC: s from all {g['n']} entries full until live entries 0 / slab objects back |"
                 f" - | {fmt(g['live0_after_s'])} / {fmt(g['slab_freed_after_s'])} | - | - |")
    if mem:
        L += ["", "Memory breakdown:"]
        for m in ("hashlimit", "smtplimit"):
            x = mem[m]
            L.append(f"- {m}: {x['tracked']} sources tracked, {x['after'] - x['before']} bytes more"
                     f" ({', '.join(f'{k} {v:+d}' for k, v in x.get('parts', {}).items())});"
                     f" slab cache {x['slab']['cache']}: object_size {x['slab']['object_size']},"
                     f" slab_size {x['slab']['slab_size']} (per-object footprint);"
                     f" vmalloc grown by caller: {x.get('vmalloc_grown')}")
        n = mem["smtplimit"]["tracked"]
        if n:
            # rhashtable doubles once it holds more than 3/4 of its buckets.
            nb = 1
            while nb * 3 // 4 < n:
                nb *= 2
            # bucket_table_alloc() kvzalloc()s the header and the buckets in
            # one piece: above 8 KiB kmalloc takes whole pages, a power of two.
            alloc = 1
            while alloc < 8 * nb + 64:
                alloc *= 2
            L.append(f"- smtplimit rhashtable: {nb} buckets (it doubles past 3/4 full) x 8 bytes, plus"
                     f" its header, in one kvzalloc() that the page allocator rounds up to {alloc >> 10} KiB:"
                     f" {alloc / n:.1f} bytes per source (between 21 and 43 as the table fills; half that"
                     " if the header were allocated apart); the slab entries take the rest")
    if d:
        L.append(f"- one read of the {d['lines'] - 2}-entry proc file took {d['one_dump_s']} s; the"
                 " reading loop runs on the vCPU pktgen's thread does not use")
    if g:
        L.append(f"- GC: {g['n']} bans written in {g['write_s']} s, all ending {g['lead_s']} s after the"
                 f" writes began; live after writing {g['live_after_write']}; slab objects base"
                 f" {g['slab_base']['objects']}, peak {g['slab_peak']['objects']}; gc_freed {g['gc_freed']}")
    return "\n".join(L) + "\n"


def fmt(x):
    return "not reached" if x is None else f"{x:.1f}"


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        sys.stdout.write(report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
