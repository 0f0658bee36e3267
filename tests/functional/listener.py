#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Accept TCP connections on a port, IPv4 and IPv6, and close them.

    listener.py [PORT [LOG]]

With LOG, each accepted connection's peer address is appended to that file
as a line, as it is accepted: what reached the server, whatever the client
saw (behind SYNPROXY a client's connect() completes against the proxy).
"""
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 25
log = open(sys.argv[2], "a", buffering=1) if len(sys.argv) > 2 else None
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(4096)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    if log:
        a = peer[0]
        log.write((a[7:] if a.startswith("::ffff:") else a) + "\n")
    c.close()
