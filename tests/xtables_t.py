#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Run iptables extension test files (.t, iptables' own format) against one
iptables binary: each OK line must be accepted, saved as expected, found by
-C and removed by -D with the same spec; each FAIL line must be refused with
exit status 2 and leave the ruleset unchanged.

    xtables_t.py IPTABLES FILE.t

Run it in a network namespace of its own, with the module loaded and
XTABLES_LIBDIR pointing at the extension.
"""
import subprocess
import sys


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def main():
    iptables, path = sys.argv[1], sys.argv[2]
    passed = failed = 0
    chains = []
    empty = {}

    def result(ok, what, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok {passed + failed} - {iptables} {what}")
        else:
            failed += 1
            print(f"not ok {passed + failed} - {iptables} {what}\n#   {detail}")

    with open(path) as f:
        lines = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
    for line in lines:
        if line.startswith(":"):
            chains = line[1:].split(",")
            continue
        rule, saved, verdict = line.rsplit(";", 2)
        if saved == "=":
            saved = rule
        args = rule.split()
        short = rule if len(rule) < 90 else rule[:87] + "..."
        for chain in chains:
            # Every line leaves the chain as it found it.
            if chain not in empty:
                empty[chain] = run([iptables, "-S", chain]).stdout
            before = empty[chain]
            add = run([iptables, "-A", chain] + args)
            after = run([iptables, "-S", chain]).stdout
            if verdict == "FAIL":
                result(add.returncode == 2 and before == after,
                       f"refuses {chain} {short}",
                       f"exit {add.returncode}, ruleset changed: {before != after}, "
                       f"stderr: {add.stderr.strip()}")
                if before != after:
                    run([iptables, "-F", chain])
                continue
            if add.returncode != 0:
                result(False, f"accepts {chain} {short}", add.stderr.strip())
                continue
            got = after.splitlines()[-1]
            want = f"-A {chain} {saved}"
            check = run([iptables, "-C", chain] + args)
            delete = run([iptables, "-D", chain] + args)
            result(got == want and check.returncode == 0 and
                   delete.returncode == 0,
                   f"{chain} {short}",
                   f"saved {got!r}, want {want!r}; -C exit {check.returncode}; "
                   f"-D exit {delete.returncode} {delete.stderr.strip()}")
            if delete.returncode != 0:
                run([iptables, "-F", chain])
    print(f"xtables_t {iptables} {path}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
