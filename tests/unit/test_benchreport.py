#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Host unit test of the bench report (lib.benchreport): bench/results.md
must be what the report makes of bench/results.json, the figures of its
tables must follow from the raw rounds (medians, cost per rule, ratios,
targets met), and README.md's table of the last run must quote them.

    PYTHONPATH=tests tests/unit/test_benchreport.py   (make unit runs it)

Prints "benchreport: N passed, N failed"."""
import json
import os
import re
import statistics
import sys

from lib.benchreport import report
from lib.results import Results

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def cells(md, first):
    """The cells of the markdown table row starting with @first."""
    for line in md.splitlines():
        c = [x.strip() for x in line.strip("|").split("|")]
        if c[0] == first:
            return c
    return None


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1)


def main():
    res = Results("benchreport")
    with open(os.path.join(REPO, "bench", "results.json")) as f:
        R = json.load(f)
    with open(os.path.join(REPO, "bench", "results.md")) as f:
        md = f.read()
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()

    res.check("bench/results.md is the report of bench/results.json", report(R) == md)

    names = {"1": "1. one hot source", "2": "2. 10,000 sources",
             "3": "3. random flood, default tables", "4": "4. 1M sources tracked",
             "5": "5. IPv6, 10,000 /64s"}
    ratios = {}
    for k, name in names.items():
        s = R["scenarios"][k]
        med = {m: statistics.median(r["pps"] for r in s["raw"][m]) for m in s["raw"]}
        res.check(f"scenario {k}: pps are the medians of the rounds",
                  all(close(med[m], s["pps"][m]) for m in med))
        cost = {m: (1 / med[m] - 1 / med["none"]) * 1e9 / s["copies"]
                for m in ("hashlimit", "smtplimit")}
        res.check(f"scenario {k}: cost per rule from the pps and {s['copies']} copies",
                  all(close(cost[m], s["cost_ns"][m], 1e-6) for m in cost))
        c = cells(md, name)
        if not res.check(f"scenario {k}: a row in the table", c, name):
            continue
        shown = [round(med[m]) for m in ("none", "hashlimit", "smtplimit")]
        shown += [round(cost[m]) for m in ("hashlimit", "smtplimit")]
        res.check(f"scenario {k}: the row's pps and costs", [int(x) for x in c[1:6]] == shown,
                  f"{c[1:6]}, want {shown}")
        if cost["hashlimit"] <= 0:
            res.check(f"scenario {k}: no ratio where hashlimit's cost is not above 0",
                      c[6] == "-" and c[8].startswith("n/a"), f"{c[6:]}")
            ratios[k] = None
            continue
        ratio = cost["smtplimit"] / cost["hashlimit"]
        ratios[k] = f"{ratio:.2f}"
        res.check(f"scenario {k}: the ratio", c[6] == ratios[k], f"{c[6]}, want {ratios[k]}")
        m = re.fullmatch(r"<= ([\d.]+)", c[7])
        if m:
            met = ratio <= float(m.group(1))
            if k == "3":    # and every flood packet judged
                met = met and all(r["judged"] == r["sent"] for r in s["raw"]["smtplimit"])
            res.check(f"scenario {k}: met against {c[7]}", c[8] == ("yes" if met else "**no**"),
                      f"{c[8]}")

    mem = R["memory"]
    per = {m: (mem[m]["after"] - mem[m]["before"]) / max(mem[m]["tracked"], 1) for m in mem}
    c = cells(md, "bytes per tracked IPv4 source (Slab+VmallocUsed+Percpu)")
    res.check("bytes per source from the memory figures",
              c and [c[1], c[2], c[4]] == [f"{per['hashlimit']:.0f}", f"{per['smtplimit']:.0f}",
                                           "yes" if per["smtplimit"] <= 64 else "**no**"],
              f"{c}, {per}")
    d = R["dump"]
    dump = statistics.median(r["pps"] for r in d["raw"]["with"]) / \
        statistics.median(r["pps"] for r in d["raw"]["without"])
    c = cells(md, f"smtplimit pps during a loop reading the {d['lines'] - 2}-entry proc file / without")
    res.check("pps during a proc dump from its rounds",
              c and c[2].startswith(f"{dump:.2f} ") and c[4] == ("yes" if dump >= 0.9 else "**no**"),
              f"{c}, {dump:.2f}")

    # README.md's table of the last run quotes these figures first.
    quoted = {"1": "1. one hot source", "3": "3. random flood, tables full",
              "4": "4. 1,000,000 sources tracked", "5": "5. IPv6, 10,000 /64s"}
    for k, row in quoted.items():
        c = cells(readme, row)
        res.check(f"README.md quotes scenario {k}'s ratio", c and ratios[k]
                  and c[1].startswith(ratios[k] + " "), f"{c and c[1]}, want {ratios[k]}")
    c = cells(readme, "2. 10,000 sources")
    res.check("README.md: scenario 2 has no ratio when hashlimit's cost is below zero",
              c and (ratios["2"] is None) == c[1].startswith("none"), f"{c and c[1]}")
    c = cells(readme, "bytes per tracked source at 100,000")
    res.check("README.md quotes the bytes per source",
              c and c[1].startswith(f"{per['smtplimit']:.0f} against {per['hashlimit']:.0f}"),
              f"{c and c[1]}")
    c = cells(readme, "pps while a loop reads the 1M-entry proc file")
    res.check("README.md quotes the pps during a proc dump",
              c and c[1].startswith(f"{dump:.2f} "), f"{c and c[1]}")
    return res.total()


if __name__ == "__main__":
    sys.exit(main())
