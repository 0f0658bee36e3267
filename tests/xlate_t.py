#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Run an iptables .txlate file (an iptables-translate command line, then the
nft line it must print) with XTABLES_LIBDIR set to find the extension. Needs
no kernel: run it on the host. Prints "xlate: N passed, N failed"."""
import shlex
import subprocess
import sys


def main():
    passed = failed = 0
    with open(sys.argv[1]) as f:
        lines = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
    if len(lines) % 2:
        failed += 1
        print(f"not ok 1 - {sys.argv[1]}: the last line, {lines[-1]!r}, has no nft line "
              f"to match")
        lines.pop()
    for cmd, want in zip(lines[::2], lines[1::2]):
        r = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
        got = r.stdout.strip()
        if r.returncode == 0 and got == want:
            passed += 1
            print(f"ok {passed + failed} - {cmd}")
        else:
            failed += 1
            print(f"not ok {passed + failed} - {cmd}\n#   got  {got or r.stderr.strip()}\n"
                  f"#   want {want}")
    print(f"xlate: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
