# SPDX-License-Identifier: GPL-2.0
"""The guest test programs' runner (tests/functional/test_*.py): picks tests
by name, gives each a fresh environment, prints one TAP-like line a test,
"ok N - [LABEL ]BACKEND NAME" (tests/mutants/guest matches it whole), the
failure's reason and the test's time as comments, and a total line
"SUITE BACKEND: N passed, N failed" (tests/results.sh tallies it)."""
import argparse
import sys
import time
import traceback


def main(tests, make_env, suite, label="", legacy_only=()):
    """Run @tests (functions test_NAME(env)) on the backend the command
    line names, each with make_env(backend), closed after. Tests in
    @legacy_only are backend-independent: under nft they are not run,
    and not counted either. Returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="legacy", choices=("legacy", "nft"))
    ap.add_argument("tests", nargs="*", help="names, with or without test_")
    a = ap.parse_args()
    names = {t.__name__[5:] for t in tests}
    unknown = [n for n in a.tests if n.removeprefix("test_") not in names]
    if unknown:
        ap.error(f"no such test: {' '.join(unknown)}")
    passed = failed = 0
    for t in tests:
        name = t.__name__[5:]
        if a.tests and name not in a.tests and t.__name__ not in a.tests:
            continue
        if a.backend != "legacy" and t in legacy_only:
            print(f"# {name}: run under --backend legacy only")
            continue
        env = make_env(a.backend)
        start = time.monotonic()
        try:
            t(env)
            ok, why = True, ""
        except Exception as e:  # a test's failure, or its setup's
            ok, why = False, f"{e}\n" + "".join(traceback.format_tb(e.__traceback__)[-2:])
        finally:
            env.close()
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok' if ok else 'not ok'} {passed + failed} - {label}{a.backend} {name}")
        for line in why.strip().splitlines():
            print(f"#   {line}")
        print(f"#   {time.monotonic() - start:.1f} s")
        sys.stdout.flush()
    print(f"{suite} {a.backend}: {passed} passed, {failed} failed")
    return 1 if failed else 0
