#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Accept TCP connections on a port, IPv4 and IPv6, and close them."""
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 25
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(4096)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
