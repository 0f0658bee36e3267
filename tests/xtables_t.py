#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Run iptables extension test files (.t, iptables' own format) on one
backend, judged as iptables' own runner (iptables-test.py) judges them.

    xtables_t.py [--fast-only] legacy|nft FILE.t...

The file's name says the families, as in iptables-test.py: libipt_ runs
under iptables, libip6t_ under ip6tables, libxt_ under both. Each OK line
must be accepted in every chain, saved as expected, found by -C and removed
by -D with the same spec; each FAIL line must be refused as a bad option or
value (exit 2, not a "Couldn't load" of the extension, which is checked to
load first) and leave the ruleset unchanged. Then the fast mode of
iptables-test.py: all OK lines of the file in one iptables-restore, and
iptables-save must list them as saved, in order. A file whose OK lines name
one table with different srcmasks cannot pass that (the module refuses
the second srcmask), and is refused before it runs.

Run it in a network namespace of its own, with the module loaded and
XTABLES_LIBDIR pointing at the extension.
"""
import os
import re
import subprocess
import sys

FAMILIES = {"libipt_": ("iptables",), "libip6t_": ("ip6tables",),
            "libxt_": ("iptables", "ip6tables")}
DEFAULT_SRCMASK = {"iptables": "32", "ip6tables": "64"}
PROBE = ["-m", "smtplimit", "--smtplimit", "1/s", "--smtplimit-name", "xtables_t_probe"]


def run(cmd, stdin=None):
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin)


def parse(path):
    """[(chains, rule, saved, verdict)], as iptables-test.py reads them."""
    out, chains = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith(":"):
                chains = line[1:].split(",")
                continue
            fields = line.split(";")
            if len(fields) != 3 or fields[2] not in ("OK", "FAIL") or not chains:
                raise SystemExit(f"{path}:{n}: not a line this runner takes: {line!r}")
            rule, saved, verdict = fields
            out.append((chains, rule, rule if saved == "=" else saved, verdict))
    return out


def fast_conflicts(lines, family):
    """OK lines naming one table with different srcmasks: the fast mode's
    one restore would be refused."""
    masks, bad = {}, []
    for _, rule, _, verdict in lines:
        if verdict != "OK":
            continue
        name = re.search(r"--smtplimit-name (\S+)", rule)
        mask = re.search(r"--smtplimit-srcmask (\S+)", rule)
        if not name:
            continue
        m = mask.group(1) if mask else DEFAULT_SRCMASK[family]
        seen = masks.setdefault(name.group(1), m)
        if seen != m:
            bad.append(f"table {name.group(1)}: srcmask {seen} and {m}")
    return bad


class Runner:
    def __init__(self):
        self.passed = self.failed = 0

    def result(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok {self.passed + self.failed} - {what}")
        else:
            self.failed += 1
            print(f"not ok {self.passed + self.failed} - {what}\n#   {detail}")
        return ok

    def lines(self, tool, lines):
        """The normal mode: one line at a time, each chain as found."""
        empty = {}
        for chains, rule, saved, verdict in lines:
            args = rule.split()
            short = rule if len(rule) < 90 else rule[:87] + "..."
            for chain in chains:
                if chain not in empty:
                    empty[chain] = run([tool, "-S", chain]).stdout
                before = empty[chain]
                add = run([tool, "-A", chain] + args)
                after = run([tool, "-S", chain]).stdout
                if verdict == "FAIL":
                    why = add.stderr.strip()
                    self.result(add.returncode == 2 and before == after and
                                "Couldn't load" not in why and why != "",
                                f"{tool} refuses {chain} {short}",
                                f"exit {add.returncode}, ruleset changed: {before != after}, "
                                f"stderr: {why}")
                    if before != after:
                        run([tool, "-F", chain])
                    continue
                if add.returncode != 0:
                    self.result(False, f"{tool} accepts {chain} {short}", add.stderr.strip())
                    continue
                got = after.splitlines()[-1]
                want = f"-A {chain} {saved}"
                check = run([tool, "-C", chain] + args)
                delete = run([tool, "-D", chain] + args)
                self.result(got == want and check.returncode == 0 and
                            delete.returncode == 0,
                            f"{tool} {chain} {short}",
                            f"saved {got!r}, want {want!r}; -C exit {check.returncode}; "
                            f"-D exit {delete.returncode} {delete.stderr.strip()}")
                if delete.returncode != 0:
                    run([tool, "-F", chain])

    def fast(self, tool, lines, path):
        """iptables-test.py's fast mode: every OK line in one restore, the
        save listing them in chain order, as saved."""
        by_chain = {}
        for chains, rule, saved, verdict in lines:
            if verdict == "OK":
                for chain in chains:
                    by_chain.setdefault(chain, []).append((rule, saved))
        restore, want = ["*filter"], []
        for chain in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"):
            for rule, saved in by_chain.get(chain, []):
                restore.append(f"-A {chain} {rule}")
                want.append(f"-A {chain} {saved}")
        restore.append("COMMIT")
        r = run([f"{tool}-restore"], "\n".join(restore) + "\n")
        save = run([f"{tool}-save", "-t", "filter"]).stdout
        run([tool, "-F"])
        got = [l for l in save.splitlines() if l.startswith("-A ")]
        self.result(r.returncode == 0 and got == want,
                    f"{tool} fast mode: {len(want)} rules of {os.path.basename(path)} in one restore",
                    f"restore exit {r.returncode} {r.stderr.strip()}; "
                    f"save differs: {sorted(set(got) ^ set(want))[:4]}")


def main():
    args = sys.argv[1:]
    fast_only = args[:1] == ["--fast-only"]
    if fast_only:
        args = args[1:]
    if len(args) < 2 or args[0] not in ("legacy", "nft"):
        raise SystemExit(__doc__)
    backend, paths = args[0], args[1:]
    r = Runner()
    for path in paths:
        prefix = [p for p in FAMILIES if os.path.basename(path).startswith(p)]
        if len(prefix) != 1:
            raise SystemExit(f"{path}: not a libipt_, libip6t_ or libxt_ file")
        lines = parse(path)
        for family in FAMILIES[prefix[0]]:
            tool = f"{family}-{backend}"
            bad = fast_conflicts(lines, family)
            if not r.result(not bad, f"{tool} {path}: no two srcmasks for one table",
                            "; ".join(bad)):
                continue
            # A FAIL line proves nothing if the extension does not load at all.
            probe = run([tool, "-A", "INPUT"] + PROBE)
            run([tool, "-D", "INPUT"] + PROBE)
            if not r.result(probe.returncode == 0, f"{tool} loads the smtplimit match",
                            probe.stderr.strip()):
                continue
            if not fast_only:
                r.lines(tool, lines)
            r.fast(tool, lines, path)
    print(f"xtables_t {backend} {' '.join(paths)}: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
