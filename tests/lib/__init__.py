# SPDX-License-Identifier: GPL-2.0
"""The Python test library of xt_smtplimit: what the test scripts share,
one module per concern.

- lib.run: running commands (sh, ns) and the error a failed one raises;
- lib.netns: namespaces: the server/client pair joined by veth, entering
  one (setns) or a new one (unshare), a chain's rule counters;
- lib.proc: the smtplimit proc file: the header line, the whole table,
  one write of commands;
- lib.traffic: pktgen and tests/tools/send6, the IPv4 and IPv6 floods,
  and Smtp, a Pair with TCP connections to port 25 (tests/functional/
  connect.py: counted, timed for the GCRA oracle, or for a duration);
- lib.results: the "ok N - ..." lines and the "NAME: N passed, N failed"
  total that tests/results.sh tallies;
- lib.memstat: the kernel's memory figures (Slab, VmallocUsed, Percpu);
- lib.benchreport: bench/results.md from bench/results.json.

Imported as `lib` with tests/ on the module path: tests/guest-lib.sh and
the host scripts that run the Python tests export PYTHONPATH=$REPO/tests.
"""
