#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The admin command userspace/smtplimit against the module's proc files,
in the guest (tests/guest-suite): list and its JSON, ban, unban, flush, the
refusals (bad address, missing table, no CAP_NET_ADMIN), metrics, save and
restore, across an rmmod and insmod of the module too.

The command runs from the root namespace with -n SERVER, so -n is tested
throughout.

    test_admin.py [--backend legacy|nft] [TEST...]"""
import calendar
import json
import os
import subprocess
import sys
import time

from lib import proc, runner
from lib.netns import SRV4
from lib.run import sh
from lib.functional import MODULE, Env, expect, limit_rules, poll

HERE = os.path.dirname(os.path.abspath(__file__))
SMTPLIMIT = os.path.join(HERE, "../../userspace/smtplimit")
RATE = ["--smtplimit", "2/h", "--smtplimit-burst", "2"]
T = 1800			# seconds per token at 2/h
DROP = ("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin")


def cmd(env, *args, check=True, prefix=(), **kw):
    """smtplimit -n SERVER ARGS...: the CompletedProcess."""
    r = sh([*prefix, SMTPLIMIT, "-n", env.srv, *args], check=False, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"smtplimit {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r


def refused(env, *args, want, prefix=()):
    """The command must exit 1 with @want (each of the strings) in its message."""
    r = cmd(env, *args, check=False, prefix=prefix)
    expect(r.returncode == 1, f"smtplimit {' '.join(args)}: exit {r.returncode}, {r.stderr!r}")
    for w in want:
        expect(w in r.stderr, f"smtplimit {' '.join(args)}: {r.stderr!r} lacks {w!r}")
    return r.stderr


def raw_proc(env, name, v6=False):
    """The proc file as header dict and rows by source, whatever columns
    the module lists (lib.proc.Table knows the six of version 1 only)."""
    lines = env.ns(env.srv, "cat", env.proc_path(name, v6)).stdout.splitlines()
    tname, header = proc.parse_header(lines[0])
    cols = lines[1].split()[1:]
    rows = {}
    for line in lines[2:]:
        f = line.split()
        rows[f[0]] = dict(zip(cols, f))
    return header, cols, rows


def typed(v):
    if v.isdigit():
        return int(v)
    if v in ("yes", "no"):
        return v == "yes"
    try:
        return float(v) if "." in v else v
    except ValueError:
        return v


def setup(env):
    """smtp_limit in both families, an attacker at 0 tokens (192.0.2.30:
    PPR), an IPv6 /64 at 0 tokens (written: "+ADDR")."""
    limit_rules(env, *RATE)
    limit_rules(env, *RATE, v6=True)
    expect(env.connect("192.0.2.30", 3) == "PPR", "attacker")
    cmd(env, "-6", "ban", "smtp_limit", "2001:db8:1::5")


def human(s):
    """A duration as smtplimit writes it: 1d2h3m4s, 29m58s, 30m, 0s."""
    parts = [(s // 86400, "d"), (s // 3600 % 24, "h"), (s // 60 % 60, "m")]
    text = "".join(f"{v}{u}" for v, u in parts if v)
    return text + (f"{s % 60}s" if s % 60 or not s else "")


def want_header(header):
    """A proc header as list -j types it."""
    want = {}
    for k, v in header.items():
        if k == "entries":
            n, m = v.split("/")
            want.update(entries=int(n), maximum=int(m))
        else:
            want[k] = typed(v)
    return want


def check_json(env, tables, before, after):
    """list -j's @tables against proc reads @before and @after it (by
    family): equal counters and rows, times between the two reads."""
    expect([(t["name"], t["family"]) for t in tables] ==
           [("smtp_limit", "ipv4"), ("smtp_limit", "ipv6")], tables)
    for t in tables:
        (h0, cols, r0), (h1, _, r1) = before[t["family"]], after[t["family"]]
        expect(h0 == h1, "traffic meanwhile")
        got = t["header"]
        expect(got == want_header(h0), f"{t['family']} header {got} != {h0}")
        expect(isinstance(got["strict"], bool) and got["rate"] == "2/hour", got)
        expect([e["source"] for e in t["entries"]] == list(r0) == list(r1), (t, r0))
        for e in t["entries"]:
            a, b = r0[e["source"]], r1[e["source"]]
            expect(set(e) == set(cols), f"keys {set(e)} != {cols}")
            expect(e["passed"] == int(a["passed"]) and e["denied"] == int(a["denied"]), (e, a))
            for k in ("next_s", "full_s"):
                expect(isinstance(e[k], int) and int(a[k]) >= e[k] >= int(b[k]), (k, a, e, b))
            expect(isinstance(e["tokens"], float), e)


def test_read(env):
    """list -j is the proc files' content, typed; list is aligned with
    units; metrics equal the headers; save's text. Missing tables named."""
    setup(env)
    read = lambda: {f: raw_proc(env, "smtp_limit", f == "ipv6") for f in ("ipv4", "ipv6")}
    before = read()
    tables = json.loads(cmd(env, "list", "-j").stdout)
    one = json.loads(cmd(env, "-6", "list", "-j", "smtp_limit").stdout)
    after = read()
    check_json(env, tables, before, after)
    v4 = {e["source"]: e for e in tables[0]["entries"]}
    expect(v4["192.0.2.30/32"]["next_s"] > T - 60 and v4["192.0.2.30/32"]["denied"] == 1, v4)
    expect([e["source"] for e in tables[1]["entries"]] == ["2001:db8:1::/64"], tables[1])
    expect([(t["name"], t["family"]) for t in one] == [("smtp_limit", "ipv6")], one)

    b = read()
    lines = cmd(env, "list").stdout.splitlines()
    a = read()
    expect(lines[0].startswith("ipv4 table smtp_limit: rate 2/hour burst 2"), lines[0])
    rows = [l for l in lines if "/32" in l or "/64" in l]
    expect(len(rows) == 2, rows)
    # Each time as the proc file gave it between the reads around list.
    for row, (fam, src) in zip(rows, (("ipv4", "192.0.2.30/32"), ("ipv6", "2001:db8:1::/64"))):
        for key, word in (("next_s", "next in"), ("full_s", "full in")):
            lo, hi = int(a[fam][2][src][key]), int(b[fam][2][src][key])
            expect(any(f"{word} {human(s)} " in row for s in range(lo, hi + 1)),
                   f"{row!r}: {word} {lo} to {hi} s")
    # Aligned: a column starts at one place on each row of a table.
    head = next(l for l in lines if "SOURCE" in l)
    expect(rows[0].index("full in") == head.index("FULL"), (head, rows[0]))
    refused(env, "list", "nosuch", want=["nosuch", "no table"])
    refused(env, "-6", "list", "nosuch", want=["no ipv6 table \"nosuch\""])
    # Without -n, the root namespace: no such table there.
    r = sh([SMTPLIMIT, "list", "smtp_limit"], check=False)
    expect(r.returncode == 1 and "smtp_limit" in r.stderr, r)
    # Reading needs no capability.
    expect(json.loads(cmd(env, "list", "-j", prefix=DROP).stdout)[1]["family"] == "ipv6", "read")

    type_, samples = parse_metrics(cmd(env, "metrics").stdout)
    for fam, (header, _, _) in read().items():
        n, m = proc.entries(header)
        expect(samples[("smtplimit_entries", "smtp_limit", fam)] == n, samples)
        expect(samples[("smtplimit_maximum", "smtp_limit", fam)] == m, samples)
        counters = [k for k, v in header.items() if v.isdigit() and k not in ("burst", "srcmask")]
        expect({"passed", "denied", "created", "banned", "cut"} <= set(counters), counters)
        for k in counters:
            name = f"smtplimit_{k}_total"
            expect(type_[name] == "counter", type_)
            expect(samples[(name, "smtp_limit", fam)] == int(header[k]),
                   f"{name} {fam}: {samples.get((name, 'smtp_limit', fam))} != {header[k]}")
    expect(type_["smtplimit_entries"] == "gauge", type_)
    expect(samples[("smtplimit_denied_total", "smtp_limit", "ipv4")] == 1, samples)
    four = parse_metrics(cmd(env, "-4", "metrics").stdout)[1]
    expect({k[2] for k in four} == {"ipv4"}, four)

    # save: the absolute time each bucket is full again, to a second or
    # two (the reads' own seconds rounded), whenever it is read.
    w0 = time.time()
    full0 = {f: int(r["192.0.2.30/32" if f == "ipv4" else "2001:db8:1::/64"]["full_s"])
             for f, (_, _, r) in read().items()}
    w1 = time.time()
    text = save_text(env)
    w2 = time.time()
    lines = text.splitlines()
    expect(lines[0].startswith("# smtplimit save at ") and
           w1 - 1 <= from_iso(lines[0][20:]) <= w2 + 1, lines[0])
    expect("table smtp_limit ipv4" in lines and "table smtp_limit ipv6" in lines, text)
    full = {l.split()[1]: from_iso(l.split()[2]) for l in lines if l.startswith("full ")}
    expect(set(full) == {"192.0.2.30", "2001:db8:1::"}, full)
    for a, f in (("192.0.2.30", "ipv4"), ("2001:db8:1::", "ipv6")):
        expect(w0 + full0[f] - 2 <= full[a] <= w1 + full0[f] + 2, (a, full, w0, w1, full0))
    expect(save_text(env, "-6", "smtp_limit").count("table ") == 1, "save -6 TABLE")


def test_write(env):
    """ban with and without seconds, unban (lifting, keeping the debt), unban --forget, flush:
    each seen in the proc file and the traffic; bad lines, a missing
    table and a missing CAP_NET_ADMIN refused before writing."""
    limit_rules(env, *RATE)
    limit_rules(env, *RATE, v6=True)
    since = time.monotonic()
    cmd(env, "ban", "smtp_limit", "192.0.2.50", "600")
    cmd(env, "ban", "smtp_limit", "192.0.2.51")
    cmd(env, "-6", "ban", "smtp_limit", "2001:db8:2::9", "120")
    h, _, rows = raw_proc(env, "smtp_limit")
    _, _, rows6 = raw_proc(env, "smtp_limit", v6=True)
    gone = time.monotonic() - since + 1
    expect(600 - gone <= int(rows["192.0.2.50/32"]["next_s"]) <= 600, (rows, gone))
    expect(float(rows["192.0.2.51/32"]["tokens"]) < 0.01 and
           T - gone <= int(rows["192.0.2.51/32"]["next_s"]) <= T, rows)
    expect(int(h["banned"]) == 2, h)
    expect(120 - gone <= int(rows6["2001:db8:2::/64"]["next_s"]) <= 120, (rows6, gone))
    expect(env.connect_each(["192.0.2.50", "192.0.2.51", "192.0.2.52"]) == ["R", "R", "P"],
           "banned refused, others pass")

    before = raw_proc(env, "smtp_limit")[2]
    refused(env, "ban", "smtp_limit", "192.0.2.010", "60", want=["192.0.2.010", "bad address"])
    refused(env, "ban", "smtp_limit", "192.0.2.60", "0", want=["seconds out of range"])
    refused(env, "ban", "smtp_limit", "192.0.2.60", "99999999", want=["seconds out of range"])
    refused(env, "ban", "smtp_limit", "2001:db8::1", "60", want=["bad address", "ipv4"])
    refused(env, "ban", "nosuch", "192.0.2.60", want=["no ipv4 table \"nosuch\""])
    refused(env, "-6", "unban", "--forget", "smtp_limit", "2001:db8::/129",
            want=["prefix too long"])
    refused(env, "ban", "smtp_limit", "192.0.2.60", "60", prefix=DROP,
            want=["CAP_NET_ADMIN", "smtp_limit"])
    expect(set(raw_proc(env, "smtp_limit")[2]) == set(before), "refusals changed nothing")

    expect(before["192.0.2.50/32"]["ban"] == "yes" and
           before["192.0.2.51/32"]["ban"] == "no", before)
    cmd(env, "unban", "smtp_limit", "192.0.2.0/24")
    rows = raw_proc(env, "smtp_limit")[2]
    a, b = rows["192.0.2.50/32"], rows["192.0.2.51/32"]
    expect(a["ban"] == "no" and int(a["next_s"]) <= T and int(a["full_s"]) <= 2 * T, a)
    expect(int(b["full_s"]) <= int(before["192.0.2.51/32"]["full_s"]), (b, before))
    expect(env.connect("192.0.2.50") == "R", "the debt remains")

    cmd(env, "unban", "--forget", "smtp_limit", "192.0.2.50")
    rows = raw_proc(env, "smtp_limit")[2]
    expect("192.0.2.50/32" not in rows and "192.0.2.51/32" in rows, rows)
    expect(env.connect("192.0.2.50", 2) == "PP", "forgotten: a full bucket")
    h0 = raw_proc(env, "smtp_limit")[0]
    cmd(env, "flush", "smtp_limit")
    h, _, rows = raw_proc(env, "smtp_limit")
    expect(rows == {} and int(h["flushes"]) == int(h0["flushes"]) + 1, (h, rows))
    expect(raw_proc(env, "smtp_limit", v6=True)[2] != {}, "the IPv6 table is another")


def parse_metrics(text):
    """({name: type}, {(name, table, family): value}); HELP and TYPE for
    each name, no timestamps."""
    help_, type_, samples = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_[line.split()[2]] = line
        elif line.startswith("# TYPE "):
            type_[line.split()[2]] = line.split()[3]
        else:
            f = line.split()
            expect(len(f) == 2, f"a sample with a timestamp or worse: {line!r}")
            name, labels = f[0].rstrip("}").split("{")
            lab = dict(kv.split("=") for kv in labels.split(","))
            samples[(name, lab["table"].strip('"'), lab["family"].strip('"'))] = int(f[1])
    expect(set(help_) == set(type_) == {k[0] for k in samples}, (help_, type_))
    return type_, samples


def save_text(env, *args):
    return cmd(env, "save", *args).stdout


def restore(env, text, *args, check=True):
    return cmd(env, "restore", *args, input=text, check=check)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def from_iso(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def test_restore(env):
    """A file with one bad line, or for a missing table, is refused whole,
    naming the line, and changes nothing. The remaining time granted: the
    saved time less now, past ones skipped, never more than at save when
    the clock went back; a ban stays a ban; --wait waits for the table."""
    limit_rules(env, *RATE)
    now = time.time()
    text = (f"# smtplimit save at {iso(now - 100)}\ntable smtp_limit ipv4\n"
            f"full 192.0.2.80 {iso(now + 300)}\nfull 192.0.2.81 {iso(now - 5)}\n"
            f"ban 192.0.2.82 {iso(now + 700)}\n")
    r = restore(env, text.replace("full 192.0.2.81 ", "full 192.0.2.810 "), check=False)
    expect(r.returncode == 1 and "-:4:" in r.stderr and "bad address" in r.stderr, r.stderr)
    r = restore(env, text.replace("ipv4", "ipv6"), check=False)
    expect(r.returncode == 1 and "-:3:" in r.stderr and "ipv6" in r.stderr, r.stderr)
    r = restore(env, text + "table nosuch ipv4\n", check=False)
    expect(r.returncode == 1 and "no ipv4 table \"nosuch\"" in r.stderr, r.stderr)
    r = restore(env, text.replace("# smtplimit save at", "# a save at"), check=False)
    expect(r.returncode == 1 and "smtplimit save" in r.stderr, r.stderr)
    expect(raw_proc(env, "smtp_limit")[2] == {}, "a refused restore changed nothing")
    restore(env, text)
    rows = raw_proc(env, "smtp_limit")[2]
    gone = time.time() - now + 1
    expect("192.0.2.81/32" not in rows, "a time already past is skipped")
    expect(300 - gone <= int(rows["192.0.2.80/32"]["full_s"]) <= 301 and
           rows["192.0.2.80/32"]["ban"] == "no", (rows, gone))
    expect(700 - gone <= int(rows["192.0.2.82/32"]["next_s"]) <= 701 and
           rows["192.0.2.82/32"]["ban"] == "yes", (rows, gone))
    # Full in 300 s: 1.83 tokens, it passes; the ban does not.
    expect(env.connect_each(["192.0.2.80", "192.0.2.82"]) == ["P", "R"], "restored")
    # Saved "in the future": the clock went back. At save 500 s remained.
    cmd(env, "flush", "smtp_limit")
    text = (f"# smtplimit save at {iso(now + 1000)}\ntable smtp_limit ipv4\n"
            f"full 192.0.2.83 {iso(now + 1500)}\n")
    restore(env, text)
    row = raw_proc(env, "smtp_limit")[2]["192.0.2.83/32"]
    expect(490 <= int(row["full_s"]) <= 501, f"granted more than at save: {row}")

    # --wait: the table comes a second after the restore starts.
    env.ipt("-F")
    expect(poll(lambda: not env.proc_exists("smtp_limit"), 10), "the table is gone")
    r = restore(env, text, check=False)
    expect(r.returncode == 1 and "no ipv4 table" in r.stderr, r.stderr)
    p = subprocess.Popen([SMTPLIMIT, "-n", env.srv, "restore", "--wait", "30"],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write(text)
    p.stdin.close()
    time.sleep(1)
    expect(p.poll() is None, "restore --wait did not wait")
    limit_rules(env, *RATE)
    expect(p.wait(40) == 0, p.stderr.read())
    expect("192.0.2.83/32" in raw_proc(env, "smtp_limit")[2], "restored after the wait")


def rules_gone_rmmod():
    """rmmod once nothing uses the module: the rules of namespaces deleted
    by earlier tests go in work queues, slowly in an emulated guest."""
    for _ in range(150):
        if sh(["rmmod", "xt_smtplimit"], check=False).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def test_metrics_node_exporter(env):
    """The package's metrics unit command (userspace/smtplimit-state
    metrics) into a textfile directory, Debian's real node_exporter reading
    it, scraped over the guest's veth: each smtplimit metric there has the
    value of the proc header read just before."""
    setup(env)
    prom = env.ns(env.srv, "mktemp", "-d").stdout.strip()
    # The unit runs in the namespace of its tables: here, the server's.
    env.ns(env.srv, "env", f"SMTPLIMIT_PROM_DIR={prom}", f"SMTPLIMIT={SMTPLIMIT}",
           os.path.join(HERE, "../../userspace/smtplimit-state"), "metrics")
    files = env.ns(env.srv, "ls", "-a", prom).stdout.split()
    expect(files == [".", "..", "smtplimit.prom"], f"textfile directory: {files}")
    headers = {f: raw_proc(env, "smtp_limit", f == "ipv6")[0] for f in ("ipv4", "ipv6")}
    exporter = subprocess.Popen(
        ["ip", "netns", "exec", env.srv, "prometheus-node-exporter",
         "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={prom}",
         f"--web.listen-address={SRV4}:9100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def scrape():
            r = env.ns(env.cli, "python3", "-c",
                       "import sys, urllib.request; sys.stdout.write(urllib.request."
                       f"urlopen('http://{SRV4}:9100/metrics', timeout=5).read().decode())",
                       check=False)
            return r.stdout if r.returncode == 0 else None
        text = poll(scrape, 20, 0.5)
        expect(text, "node_exporter did not answer on port 9100")
    finally:
        exporter.kill()
        exporter.wait()
    expect("node_textfile_scrape_error 0" in text, "textfile collector error")
    ours = "\n".join(l for l in text.splitlines() if "smtplimit_" in l and
                     not l.startswith("node_textfile_mtime_seconds"))
    type_, samples = parse_metrics(ours)
    for fam, header in headers.items():
        n, m = proc.entries(header)
        expect(samples[("smtplimit_entries", "smtp_limit", fam)] == n, samples)
        expect(samples[("smtplimit_maximum", "smtp_limit", fam)] == m, samples)
        for k in ("passed", "denied", "created", "banned", "evicted", "untracked"):
            got = samples.get((f"smtplimit_{k}_total", "smtp_limit", fam))
            expect(got == int(header[k]), f"smtplimit_{k}_total {fam}: {got} != {header[k]}")
            expect(type_[f"smtplimit_{k}_total"] == "counter", type_)
    expect(samples[("smtplimit_denied_total", "smtp_limit", "ipv4")] == 1, samples)
    print(f"#   node_exporter served {len(samples)} smtplimit samples")


def test_save_restore_reload(env):
    """Issue 16 part 2: an attacker at 0 tokens, a ban of 600 s, an IPv6
    /64; save; rules and module removed, loaded again; restore: the
    attacker is refused with next_s within 2 s of what it was less the
    time elapsed, the ban is a ban, the /64 is there."""
    setup(env)
    cmd(env, "ban", "smtp_limit", "198.51.100.7", "600")
    t0 = time.monotonic()
    before = raw_proc(env, "smtp_limit")[2]
    ta = time.monotonic()
    before6 = raw_proc(env, "smtp_limit", True)[2]
    text = save_text(env)
    rules4, rules6 = env.save(), env.save(v6=True)
    env.ipt("-F")
    env.ipt("-F", v6=True)
    expect(rules_gone_rmmod(), "rmmod xt_smtplimit (another user of the module?)")
    sh(["insmod", MODULE])
    env.restore(rules4)
    env.restore(rules6, v6=True)
    expect(raw_proc(env, "smtp_limit")[2] == {}, "a new module starts empty")
    restore(env, text)
    t1 = time.monotonic()
    after = raw_proc(env, "smtp_limit")[2]
    tb = time.monotonic()
    after6 = raw_proc(env, "smtp_limit", True)[2]
    # What it was less the time elapsed between the two reads, within 2 s.
    within = lambda was, now: was - (tb - t0) - 2 <= now <= was - (t1 - ta) + 2
    a0, a1 = before["192.0.2.30/32"], after["192.0.2.30/32"]
    expect(within(int(a0["next_s"]), int(a1["next_s"])) and
           within(int(a0["full_s"]), int(a1["full_s"])), (a0, a1, t1 - ta))
    b0, b1 = before["198.51.100.7/32"], after["198.51.100.7/32"]
    expect(b1["ban"] == "yes" and within(int(b0["next_s"]), int(b1["next_s"])), (b0, b1))
    expect(set(after6) == set(before6) == {"2001:db8:1::/64"}, after6)
    expect(env.connect_each(["192.0.2.30", "198.51.100.7", "192.0.2.32"]) == ["R", "R", "P"],
           "the attacker and the ban refused, others pass")
    print(f"# reload: restored {t1 - ta:.1f} s after the save")


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
# The reload last: if it fails between rmmod and insmod, only it fails.
TESTS.sort(key=lambda t: t is test_save_restore_reload)


if __name__ == "__main__":
    sys.exit(runner.main(TESTS, Env, "admin", label="admin "))
