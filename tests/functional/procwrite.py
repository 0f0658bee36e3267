#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Write standard input to a file in one write() and print "OK N" or
"ERR <errno name>"."""
import errno
import os
import sys

data = sys.stdin.buffer.read()
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
except OSError as e:
    print("ERR", errno.errorcode[e.errno])
    sys.exit(0)
try:
    print("OK", os.write(fd, data))
except OSError as e:
    print("ERR", errno.errorcode[e.errno])
