#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Write standard input to a file in one write() and print "OK N" or
"ERR <errno name>" (lib.proc.write; tests/ on PYTHONPATH). A program of its
own, so that test_smtplimit.py can run it in a namespace and without
capabilities.

    procwrite.py PATH <DATA
"""
import sys

from lib import proc

ok, got = proc.write(sys.argv[1], sys.stdin.buffer.read())
print("OK" if ok else "ERR", got)
