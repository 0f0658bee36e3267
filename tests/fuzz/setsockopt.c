// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzz the kernel side of the smtplimit match with corrupted match data:
 * rulesets holding 1 to 3 smtplimit rules go to the kernel through
 * IPT_SO_SET_REPLACE and IP6T_SO_SET_REPLACE (libiptc's commit), their
 * xt_smtplimit_mtinfo randomized field by field and byte by byte, the
 * kernel-private priv pointer always garbage.
 *
 *   setsockopt [-4|-6] [--nft] CASES SEED
 *
 * Each case is judged against an oracle written from the ABI (README.md and
 * xt_smtplimit.h), not from the module's code: it must be accepted exactly
 * when every rule is valid and no two rules ask one table for two srcmasks.
 * After each case: the chain is empty again (refused: unchanged; accepted:
 * flushed), no table is left in /proc/net/ip{,6}t_smtplimit/, and an
 * accepted rule read back shows what was written with priv zeroed (no
 * kernel pointer leaks). Accepted rules see a few packets on loopback and
 * their proc file is read.
 *
 * With --nft the same rules go through iptables-nft (nft_compat), written by
 * tests/fuzz/xtraw/libxt_smtplimit.so, a raw plugin taking the match data in
 * hex, so that binary corruption reaches the kernel through netlink too.
 *
 * Runs in a network namespace of its own (it unshares one).
 * Prints "setsockopt: N passed, N failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>
#include <linux/netfilter/xt_smtplimit.h>

#define INFO_SIZE sizeof(struct xt_smtplimit_mtinfo)
#define USER_SIZE offsetof(struct xt_smtplimit_mtinfo, priv)
#define MAX_RULES 3

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static uint32_t below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

static const char name_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

static void base_info(struct xt_smtplimit_mtinfo *info, unsigned int width,
		      unsigned long n)
{
	static const uint32_t rates[] = { 1, 24, 2 * 24, 1440, 86400,
					  86400 * 100, XT_SMTPLIMIT_RATE_MAX };
	static const uint32_t bursts[] = { 1, 2, 5, 40, 1000,
					   XT_SMTPLIMIT_BURST_MAX };

	memset(info, 0, sizeof(*info));
	info->rate = below(2) ? rates[below(7)] : 1 + below(XT_SMTPLIMIT_RATE_MAX);
	info->burst = below(2) ? bursts[below(6)] : 1 + below(XT_SMTPLIMIT_BURST_MAX);
	info->htable_max = below(4) ? 1 + below(1000) :
			   below(2) ? XT_SMTPLIMIT_HTABLE_MAX_LIMIT : XT_SMTPLIMIT_HTABLE_MAX_DEFAULT;
	info->srcmask = below(width + 1);
	info->flags = below(XT_SMTPLIMIT_F_ALL + 1);
	snprintf(info->name, sizeof(info->name), "fz%lu", n);
}

static uint32_t pick32(uint32_t max)
{
	const uint32_t v[] = { 0, 1, max, max + 1, 0xffffffffU, 0x80000000U,
			       (uint32_t)rnd() };

	return v[below(7)];
}

static void mutate(struct xt_smtplimit_mtinfo *info, unsigned int width)
{
	unsigned char *b = (unsigned char *)info;
	unsigned int i, len;

	switch (below(15)) {
	case 0: b[below(INFO_SIZE)] ^= 1 << below(8); break;
	case 1: b[below(INFO_SIZE)] = (unsigned char)rnd(); break;
	case 2: info->rate = pick32(XT_SMTPLIMIT_RATE_MAX); break;
	case 3: info->burst = pick32(XT_SMTPLIMIT_BURST_MAX); break;
	case 4: info->htable_max = pick32(XT_SMTPLIMIT_HTABLE_MAX_LIMIT); break;
	case 5: {
		const unsigned int v[] = { 0, width, width + 1, 255, 33, 129 };

		info->srcmask = below(2) ? v[below(6)] : (uint8_t)rnd();
		break;
	}
	case 6: info->flags = below(2) ? 1u << below(8) : (uint8_t)rnd(); break;
	case 7: info->reserved = below(2) ? 1u << below(16) : (uint16_t)rnd(); break;
	case 8:	/* no NUL at all */
		for (i = 0; i < sizeof(info->name); i++)
			info->name[i] = name_chars[below(sizeof(name_chars) - 1)];
		break;
	case 9: {	/* one odd byte inside the name */
		const char odd[] = { '/', '\n', ' ', '\x80', '\xff', '*', ':', '\x01', 0 };

		len = strnlen(info->name, sizeof(info->name));
		info->name[below(len ? len : 1)] = odd[below(sizeof(odd))];
		break;
	}
	case 10: {
		const char *v[] = { "", ".", "..", "...", "-", "a/b", "a\nb" };

		memset(info->name, 0, sizeof(info->name));
		strcpy(info->name, v[below(7)]);
		break;
	}
	case 11:	/* longest valid name, or one byte longer */
		len = 126 + below(3);
		memset(info->name, 0, sizeof(info->name));
		for (i = 0; i < len && i < sizeof(info->name); i++)
			info->name[i] = name_chars[below(sizeof(name_chars) - 1)];
		break;
	case 12:	/* garbage after the NUL: still a valid name */
		len = strnlen(info->name, sizeof(info->name));
		for (i = len + 1; i < sizeof(info->name); i++)
			info->name[i] = (char)rnd();
		break;
	case 13: b[below(INFO_SIZE)] = 0; break;
	default:	/* whole random fields */
		for (i = 0; i < 16; i++)
			b[i] = (unsigned char)rnd();
		break;
	}
}

/* The oracle, from the ABI: is this match data a valid rule by itself? */
static int info_valid(const struct xt_smtplimit_mtinfo *info, unsigned int width)
{
	size_t len = strnlen(info->name, sizeof(info->name)), i;

	if (len == 0 || len >= sizeof(info->name))
		return 0;
	if (!strcmp(info->name, ".") || !strcmp(info->name, ".."))
		return 0;
	for (i = 0; i < len; i++)
		if (!strchr(name_chars, info->name[i]))
			return 0;
	return !(info->flags & ~XT_SMTPLIMIT_F_ALL) && !info->reserved &&
	       info->rate >= XT_SMTPLIMIT_RATE_MIN && info->rate <= XT_SMTPLIMIT_RATE_MAX &&
	       info->burst >= XT_SMTPLIMIT_BURST_MIN && info->burst <= XT_SMTPLIMIT_BURST_MAX &&
	       info->htable_max >= 1 && info->htable_max <= XT_SMTPLIMIT_HTABLE_MAX_LIMIT &&
	       info->srcmask <= width;
}

static int ruleset_valid(const struct xt_smtplimit_mtinfo *info, int n,
			 unsigned int width)
{
	int i, j;

	for (i = 0; i < n; i++) {
		if (!info_valid(&info[i], width))
			return 0;
		for (j = 0; j < i; j++)
			if (!strcmp(info[i].name, info[j].name) &&
			    info[i].srcmask != info[j].srcmask)
				return 0;
	}
	return 1;
}

/* Build one entry: [ip|ip6]t_entry, the smtplimit match, ACCEPT. */
static void *make_entry(int v6, const struct xt_smtplimit_mtinfo *info, size_t *size)
{
	size_t head = v6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
	size_t msz = XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(INFO_SIZE);
	size_t tsz = XT_ALIGN(sizeof(struct xt_standard_target));
	unsigned char *e = calloc(1, head + msz + tsz);
	struct xt_entry_match *m = (void *)(e + head);
	struct xt_standard_target *t = (void *)(e + head + msz);

	if (!e)
		exit(2);
	if (v6) {
		((struct ip6t_entry *)e)->target_offset = head + msz;
		((struct ip6t_entry *)e)->next_offset = head + msz + tsz;
	} else {
		((struct ipt_entry *)e)->target_offset = head + msz;
		((struct ipt_entry *)e)->next_offset = head + msz + tsz;
	}
	m->u.match_size = msz;
	strcpy(m->u.user.name, "smtplimit");
	memcpy(m->data, info, INFO_SIZE);
	t->target.u.target_size = tsz;
	strcpy(t->target.u.user.name, "ACCEPT");
	*size = head + msz + tsz;
	return e;
}

struct handle_ops {
	struct xtc_handle *(*init)(const char *);
	void (*free)(struct xtc_handle *);
	int (*flush)(const xt_chainlabel, struct xtc_handle *);
	int (*commit)(struct xtc_handle *);
	const char *(*strerror)(int);
	const char *proc_dir;
};

static int ipt_append(const char *c, const void *e, struct xtc_handle *h)
{
	return iptc_append_entry(c, e, h);
}

static int ip6t_append(const char *c, const void *e, struct xtc_handle *h)
{
	return ip6tc_append_entry(c, e, h);
}

static const struct handle_ops ops4 = {
	iptc_init, iptc_free, iptc_flush_entries, iptc_commit, iptc_strerror,
	"/proc/net/ipt_smtplimit"
};
static const struct handle_ops ops6 = {
	ip6tc_init, ip6tc_free, ip6tc_flush_entries, ip6tc_commit, ip6tc_strerror,
	"/proc/net/ip6t_smtplimit"
};

/* The rules of INPUT, their match data copied into @got; -1 on error. */
static int read_back(int v6, struct xt_smtplimit_mtinfo *got, int max)
{
	struct xtc_handle *h = v6 ? ip6tc_init("filter") : iptc_init("filter");
	int n = 0;

	if (!h)
		return -1;
	if (v6) {
		const struct ip6t_entry *e;

		for (e = ip6tc_first_rule("INPUT", h); e; e = ip6tc_next_rule(e, h), n++)
			if (n < max)
				memcpy(&got[n], ((struct xt_entry_match *)e->elems)->data, INFO_SIZE);
		ip6tc_free(h);
	} else {
		const struct ipt_entry *e;

		for (e = iptc_first_rule("INPUT", h); e; e = iptc_next_rule(e, h), n++)
			if (n < max)
				memcpy(&got[n], ((struct xt_entry_match *)e->elems)->data, INFO_SIZE);
		iptc_free(h);
	}
	return n;
}

static int tables_left(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' || (de->d_name[1] && strcmp(de->d_name, "..")))
			n++;
	closedir(d);
	return n;
}

/* Some UDP packets through loopback, judged by the accepted rules. */
static void traffic(int v6)
{
	int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(9),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(9),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int i;

	if (s < 0)
		return;
	for (i = 0; i < 4; i++)
		sendto(s, "x", 1, MSG_DONTWAIT, v6 ? (void *)&a6 : (void *)&a4,
		       v6 ? sizeof(a6) : sizeof(a4));
	close(s);
}

/* Read every table's proc file whole: it must start with its header. */
static int read_tables(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[600], buf[4096];
	int bad = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		int fd;
		ssize_t r, total = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;	/* gone meanwhile (nft destroys late) */
		while ((r = read(fd, buf, sizeof(buf))) > 0) {
			if (!total && strncmp(buf, "# ", 2)) {
				fprintf(stderr, "%s: bad header %.60s\n", path, buf);
				bad++;
			}
			total += r;
		}
		close(fd);
	}
	closedir(d);
	return bad;
}

static int iptc_case(int v6, const struct xt_smtplimit_mtinfo *info, int n,
		     int *err)
{
	const struct handle_ops *o = v6 ? &ops6 : &ops4;
	struct xtc_handle *h = o->init("filter");
	int i, ok;

	if (!h) {
		fprintf(stderr, "init: %s\n", o->strerror(errno));
		exit(2);
	}
	o->flush("INPUT", h);
	for (i = 0; i < n; i++) {
		size_t sz;
		void *e = make_entry(v6, &info[i], &sz);

		if (!(v6 ? ip6t_append : ipt_append)("INPUT", e, h)) {
			fprintf(stderr, "append: %s\n", o->strerror(errno));
			exit(2);
		}
		free(e);
	}
	ok = o->commit(h);
	*err = ok ? 0 : errno;
	o->free(h);
	return ok;
}

static int iptc_flush(int v6)
{
	const struct handle_ops *o = v6 ? &ops6 : &ops4;
	struct xtc_handle *h = o->init("filter");
	int ok;

	if (!h)
		return 0;
	ok = o->flush("INPUT", h) && o->commit(h);
	o->free(h);
	return ok;
}

static const char *self_dir;

static int run(char *const argv[], int quiet)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);

			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The same rules through iptables-nft and the raw plugin: one transaction. */
static int nft_case(int v6, const struct xt_smtplimit_mtinfo *info, int n, int *err)
{
	char path[4096], file[] = "/tmp/fuzz-nft-XXXXXX";
	int fd = mkstemp(file), i, st;
	FILE *f;
	char *argv[] = { v6 ? "ip6tables-nft-restore" : "iptables-nft-restore",
			 "--noflush", file, NULL };

	snprintf(path, sizeof(path), "%s/xtraw:%s", self_dir,
		 getenv("XT_SYSTEM_LIBDIR") ? getenv("XT_SYSTEM_LIBDIR") :
		 "/usr/lib/x86_64-linux-gnu/xtables");
	setenv("XTABLES_LIBDIR", path, 1);
	f = fdopen(fd, "w");
	fprintf(f, "*filter\n");
	for (i = 0; i < n; i++) {
		const unsigned char *b = (const void *)&info[i];
		size_t k;

		fprintf(f, "-A INPUT -m smtplimit --smtplimit-raw ");
		for (k = 0; k < INFO_SIZE; k++)
			fprintf(f, "%02x", b[k]);
		fprintf(f, " -j ACCEPT\n");
	}
	fprintf(f, "COMMIT\n");
	fclose(f);
	st = run(argv, 1);
	unlink(file);
	*err = st;
	return st == 0;
}

static int nft_flush(int v6)
{
	char *argv[] = { v6 ? "ip6tables-nft" : "iptables-nft", "-F", "INPUT", NULL };

	return run(argv, 0) == 0;
}

/* 1 if INPUT holds any rule */
static int nft_rules(int v6)
{
	char *argv2[] = { "sh", "-c", v6 ?
		"test $(ip6tables-nft -S INPUT | wc -l) -le 1" :
		"test $(iptables-nft -S INPUT | wc -l) -le 1", NULL };

	return run(argv2, 0) == 0 ? 0 : 1;
}

static void lo_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return;
	ifr.ifr_flags |= IFF_UP;
	ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
}

int main(int argc, char **argv)
{
	int fam = 0, nft = 0, argi = 1;
	unsigned long cases, c, passed = 0, failed = 0, accepted = 0, refused = 0;
	unsigned long errs[256] = { 0 };
	char *slash;
	int nerr;

	for (; argi < argc && argv[argi][0] == '-'; argi++) {
		if (!strcmp(argv[argi], "-4"))
			fam = 4;
		else if (!strcmp(argv[argi], "-6"))
			fam = 6;
		else if (!strcmp(argv[argi], "--nft"))
			nft = 1;
		else
			break;
	}
	if (argc - argi != 2) {
		fprintf(stderr, "usage: %s [-4|-6] [--nft] CASES SEED\n", argv[0]);
		return 2;
	}
	cases = strtoul(argv[argi], NULL, 0);
	rng_state = strtoull(argv[argi + 1], NULL, 0) * 0x9E3779B97F4A7C15ULL | 1;
	self_dir = strdup(argv[0]);
	slash = strrchr(self_dir, '/');
	if (slash)
		*slash = '\0';
	else
		self_dir = ".";
	if (unshare(CLONE_NEWNET) < 0) {
		perror("unshare(CLONE_NEWNET)");
		return 2;
	}
	lo_up();
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (c = 0; c < cases; c++) {
		int v6 = fam ? fam == 6 : (int)below(2);
		unsigned int width = v6 ? 128 : 32;
		const char *dir = v6 ? ops6.proc_dir : ops4.proc_dir;
		struct xt_smtplimit_mtinfo info[MAX_RULES], got[MAX_RULES];
		int n = below(4) ? 1 : 2 + below(MAX_RULES - 1);
		int i, k, ok, want, err, bad = 0, left, tries;

		base_info(&info[0], width, c);
		for (i = 1; i < n; i++) {
			base_info(&info[i], width, c);
			if (below(3)) {	/* the same table */
				info[i].srcmask = below(3) ? info[0].srcmask : below(width + 1);
			} else {
				snprintf(info[i].name, sizeof(info[i].name), "fz%lu-%d", c, i);
			}
		}
		for (i = 0; i < n; i++) {
			if (below(8))
				for (k = below(4) + 1; k > 0; k--)
					mutate(&info[i], width);
			if (below(8))	/* garbage in the kernel-private pointer */
				memcpy(&info[i].priv, (uint64_t[]){ rnd() }, 8);
		}
		want = ruleset_valid(info, n, width);

		ok = nft ? nft_case(v6, info, n, &err) : iptc_case(v6, info, n, &err);
		if (ok) {
			accepted++;
			if (!nft) {
				k = read_back(v6, got, MAX_RULES);
				if (k != n) {
					fprintf(stderr, "case %lu: %d rules read back, %d written\n", c, k, n);
					bad++;
				}
				for (i = 0; i < n && i < k; i++) {
					if (memcmp(&got[i], &info[i], USER_SIZE)) {
						fprintf(stderr, "case %lu: rule %d reads back otherwise\n", c, i);
						bad++;
					}
					if (got[i].priv) {
						fprintf(stderr, "case %lu: rule %d leaks priv %p\n", c, i,
							(void *)got[i].priv);
						bad++;
					}
				}
			}
			traffic(v6);
			bad += read_tables(dir);
			if (!(nft ? nft_flush(v6) : iptc_flush(v6))) {
				fprintf(stderr, "case %lu: flush failed\n", c);
				bad++;
			}
		} else {
			refused++;
			errs[err & 255]++;
			if (nft ? nft_rules(v6) : read_back(v6, got, MAX_RULES) != 0) {
				fprintf(stderr, "case %lu: a refused ruleset changed the chain\n", c);
				bad++;
			}
		}
		/* Every table goes with its last rule (nft: a little later). */
		for (tries = 0; (left = tables_left(dir)) && tries < (nft ? 100 : 1); tries++)
			usleep(20000);
		if (left) {
			fprintf(stderr, "case %lu: %d table(s) left in %s\n", c, left, dir);
			bad++;
		}
		if (ok != want) {
			fprintf(stderr, "case %lu: %s %s, oracle says %s (err %d %s)\n", c,
				v6 ? "ipv6" : "ipv4", ok ? "accepted" : "refused",
				want ? "valid" : "invalid", err, nft ? "" : strerror(err));
			for (i = 0; i < n; i++) {
				const unsigned char *b = (const void *)&info[i];
				size_t j;

				fprintf(stderr, "  rule %d: ", i);
				for (j = 0; j < INFO_SIZE; j++)
					fprintf(stderr, "%02x", b[j]);
				fprintf(stderr, "\n");
			}
			bad++;
		}
		if (bad)
			failed++;
		else
			passed++;
	}
	printf("setsockopt%s: %lu cases run, %lu accepted, %lu refused (",
	       nft ? " nft" : "", cases, accepted, refused);
	for (c = 0, nerr = 0; c < 256; c++) {
		if (!errs[c])
			continue;
		if (nft)
			printf("%sexit %lu: %lu", nerr++ ? ", " : "", c, errs[c]);
		else
			printf("%s%s %lu", nerr++ ? ", " : "",
			       strerrorname_np((int)c) ?: "?", errs[c]);
	}
	printf(")\n");
	printf("setsockopt%s: %lu passed, %lu failed\n", nft ? " nft" : "", passed, failed);
	return failed ? 1 : 0;
}
