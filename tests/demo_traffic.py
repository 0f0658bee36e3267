#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The client side of `make demo`, run in the client namespace: the seed's
attack on a real SMTP server, all classes at once for --duration seconds.

- a dictionary attacker (one address, --workers connections in parallel,
  each trying three AUTH LOGINs with user names from the seed's log and
  wrong passwords, then QUIT, and again);
- a botnet (--bots addresses, --bot-connections each, a few seconds apart,
  each a relay attempt: MAIL FROM, RCPT TO a foreign domain, QUIT);
- a legitimate MTA delivering one message per connection at the times
  given by --mta-at (seconds into the round);
- with --forge-as, a forger sending raw SYNs with that address (the MTA's)
  from the start, ten a second, which no handshake follows: against a plain
  per-source limit they would use up the MTA's bucket.

Prints one JSON object: per class, the attempts and what became of them."""
import argparse
import json
import random
import smtplib
import socket
import sys
import threading
import time

from lib.synburst import syn

# User names the seed's logwatch shows for its dictionary attacker.
USERS = """admin oracle test webmaster info admin1 backup dedicated distro
postgres test03 tested user1 customer david guest html pop sales scan share
sysmanager temp tester adam administrator admins alias amanda andrea connect
cpanel cyrus dean debian foster ftpuser george help ident john library
manager master michael named news newsletter orders oscar pgsql postmaster
proxy redbull roberto sara send sgi shop spam stephen student support system
terry tomcat tony unknown user visitor web webadmin webpop wwwrun""".split()
PASSWORDS = ["123456", "password", "admin", "12345678", "qwerty", "test",
             "changeme", "letmein", "abc123", "passw0rd"]

lock = threading.Lock()
results = {"attacker": [], "botnet": [], "mta": [], "forger": []}


def record(cls, **kw):
    with lock:
        results[cls].append(kw)


class SMTP(smtplib.SMTP):
    """connect() gives up after connect_timeout (a dropped SYN); a session
    that got through has `timeout` for each reply (the VM may be slow)."""
    connect_timeout = 5

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), self.connect_timeout,
                                     self.source_address)
        s.settimeout(timeout)
        return s


def session(src, dst, connect_timeout):
    s = SMTP(timeout=60, source_address=(src, 0))
    s.connect_timeout = connect_timeout
    s.connect(dst, 25)
    return s


def attacker(a, deadline, rng, seq):
    while time.time() < deadline:
        t = time.time()
        try:
            s = session(a.attacker, a.dst, a.timeout)
        except (OSError, smtplib.SMTPException):
            record("attacker", t=t, connected=False, auths=0)
            continue
        auths = 0
        try:
            s.ehlo("attacker.example")
            for _ in range(3):
                with lock:
                    user = USERS[seq[0] % len(USERS)]
                    seq[0] += 1
                s.user, s.password = user, rng.choice(PASSWORDS)
                auths += 1
                try:
                    s.auth("LOGIN", s.auth_login, initial_response_ok=False)
                except smtplib.SMTPAuthenticationError:
                    pass
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            s.close()
        record("attacker", t=t, connected=True, auths=auths)


def bot(a, src, start, gaps):
    time.sleep(max(0.0, start - time.time()))
    for gap in gaps:
        t = time.time()
        try:
            s = session(src, a.dst, a.bot_timeout)
        except (OSError, smtplib.SMTPException):
            record("botnet", t=t, src=src, connected=False)
        else:
            try:
                s.ehlo(f"bot{src.split('.')[-1]}.example")
                s.mail("winner@lottery.example")
                s.rcpt("victim@destination.example")   # 554: relay denied
                s.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                s.close()
            record("botnet", t=t, src=src, connected=True)
        time.sleep(gap)


def mta(a, t0, n, at):
    time.sleep(max(0.0, t0 + at - time.time()))
    t = time.time()
    msg = (f"From: <newsletter@partner.example>\r\nTo: <{a.rcpt}>\r\n"
           f"Subject: demo message {n}\r\nMessage-ID: <demo-{n}-{t:.0f}@partner.example>\r\n"
           f"\r\nLegitimate message {n}.\r\n")
    try:
        s = session(a.mta, a.dst, 30)
    except (OSError, smtplib.SMTPException) as e:
        record("mta", t=t, n=n, connected=False, accepted=False, error=str(e))
        return
    try:
        s.ehlo("mx.partner.example")
        s.sendmail("newsletter@partner.example", [a.rcpt], msg)
        s.quit()
        record("mta", t=t, n=n, connected=True, accepted=True)
    except (OSError, smtplib.SMTPException) as e:
        record("mta", t=t, n=n, connected=True, accepted=False, error=str(e))
    finally:
        s.close()


def forger(a, deadline):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = 0
    while time.time() < deadline:
        for _ in range(10):
            s.sendto(syn(socket.AF_INET, a.forge_as, a.dst, 20000 + sent % 40000, 25),
                     (a.dst, 0))
            sent += 1
        time.sleep(1)
    record("forger", src=a.forge_as, sent=sent)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dst", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--attacker", required=True)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--bot", action="append", default=[])
    p.add_argument("--bot-connections", type=int, default=3)
    p.add_argument("--bot-timeout", type=float, default=5)
    p.add_argument("--mta", required=True)
    p.add_argument("--mta-at", type=float, action="append", default=[])
    p.add_argument("--rcpt", required=True)
    p.add_argument("--seed", type=int, default=2015)
    p.add_argument("--forge-as")
    a = p.parse_args()
    rng = random.Random(a.seed)          # the same traffic in both rounds
    t0 = time.time()
    deadline = t0 + a.duration
    threads = []
    seq = [0]
    for w in range(a.workers):
        threads.append(threading.Thread(
            target=attacker, args=(a, deadline, random.Random(a.seed + w), seq)))
    for src in a.bot:
        start = t0 + rng.uniform(0, max(1.0, a.duration - 10))
        gaps = [rng.uniform(1, 4) for _ in range(a.bot_connections)]
        threads.append(threading.Thread(target=bot, args=(a, src, start, gaps)))
    for n, at in enumerate(a.mta_at, 1):
        threads.append(threading.Thread(target=mta, args=(a, t0, n, at)))
    if a.forge_as:
        threads.append(threading.Thread(target=forger, args=(a, deadline)))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    json.dump({"t0": t0, "end": time.time(), **results}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
