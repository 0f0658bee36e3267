# SPDX-License-Identifier: GPL-2.0
"""Counting a test script's results: one "ok N - what[: detail]" or
"not ok N - what[: detail]" line per check, then "NAME: N passed, N failed",
the line tests/results.sh's tally adds up (by its NAME prefix)."""


class Results:
    """The checks of one script, named @name in its total line; with
    @quiet, only failed checks print their line."""

    def __init__(self, name, quiet=False):
        self.name, self.quiet = name, quiet
        self.passed = self.failed = 0

    def check(self, what, ok, detail=""):
        """Count and print one check; @ok, as a bool."""
        ok = bool(ok)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if not (ok and self.quiet):
            print(f"{'ok' if ok else 'not ok'} {self.passed + self.failed} - {what}"
                  + (f": {detail}" if detail else ""), flush=True)
        return ok

    def add(self, passed, failed):
        """Count checks printed elsewhere."""
        self.passed += passed
        self.failed += failed

    def total(self):
        """Print the total line; the exit status: 1 if any check failed."""
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0
