# SPDX-License-Identifier: GPL-2.0
#
# make            module (against KDIR) and iptables extension
# make check      host unit tests, then every test in a QEMU guest
# make demo       the seed's attack in a QEMU guest, with and without a limit
# make install    module, extension and man page into this system

# The running kernel's headers, or else those of the newest installed
# kernel that the tests can boot (scripts/debian-kernel), or else the newest.
ifeq ($(origin KDIR), undefined)
  KDIR := /lib/modules/$(shell uname -r)/build
  ifeq ($(wildcard $(KDIR)/Makefile),)
    KDIR := $(addprefix /lib/modules/,$(addsuffix /build,$(shell scripts/debian-kernel test || scripts/debian-kernel build)))
    KDIR_NOTE := : no headers for the running kernel $(shell uname -r)
  endif
endif
KVER ?= $(notdir $(patsubst %/build,%,$(KDIR)))

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror
XT_CFLAGS := $(shell pkg-config --cflags xtables 2>/dev/null)
XTLIBDIR ?= $(shell pkg-config --variable=xtlibdir xtables 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/xtables)
SHARED_SRC := kernel/smtplimit_rate.c userspace/smtplimit_parse.c
SHARED_HDR := kernel/smtplimit_rate.h userspace/smtplimit_parse.h \
	      include/uapi/linux/netfilter/xt_smtplimit.h
# The proc write's line syntax: the module, the admin command, a unit test.
CMD_SRC := kernel/smtplimit_cmd.c
CMD_HDR := kernel/smtplimit_cmd.h include/uapi/linux/netfilter/xt_smtplimit.h
PLUGIN := userspace/libxt_smtplimit.so
# The admin command, with the module's own parser of the proc commands.
ADMIN := userspace/smtplimit
MANPAGE := userspace/xt_smtplimit.8
UNIT := tests/unit/test_rate
UNIT_CMD := tests/unit/test_cmd

VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
DKMS_SRC := /usr/src/xt_smtplimit-$(VERSION)
# What DKMS builds the module from, and nothing else.
DKMS_FILES := dkms.conf Kbuild LICENSE kernel/xt_smtplimit.c \
	      kernel/smtplimit_table.c kernel/smtplimit_table.h \
	      kernel/smtplimit_places.c \
	      kernel/smtplimit_mutant.h \
	      kernel/smtplimit_proc.c kernel/smtplimit_proc.h \
	      kernel/smtplimit_write.c kernel/smtplimit_rate.c \
	      kernel/smtplimit_rate.h kernel/compat.h \
	      kernel/smtplimit_cmd.c kernel/smtplimit_cmd.h \
	      include/uapi/linux/netfilter/xt_smtplimit.h

.PHONY: all module plugin unit check demo install uninstall clean deps lint \
	dkms-install dkms-uninstall bench fuzz flood stress check-kernels test-tools \
	mutants mutants-build

all: module plugin

deps:
	@scripts/install-deps

module:
	@test -n "$(KDIR)" || { echo "no kernel build tree: run scripts/install-deps or set KDIR" >&2; exit 1; }
	@echo "module: building for $(KVER) against $(KDIR)$(KDIR_NOTE)"
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

plugin: $(PLUGIN) $(MANPAGE) $(ADMIN)

ADMIN_SRC := userspace/smtplimit.c userspace/smtplimit_crowdsec.c
$(ADMIN): $(ADMIN_SRC) userspace/smtplimit.h $(CMD_SRC) $(CMD_HDR)
	$(CC) $(CFLAGS) $(WARN) -std=c11 -Iinclude/uapi -Ikernel -o $@ $(ADMIN_SRC) $(CMD_SRC) -lm

# The standalone man page is the extension's fragment with a title.
$(MANPAGE): userspace/libxt_smtplimit.man
	{ printf '.TH XT_SMTPLIMIT 8 "" "xt_smtplimit" "iptables extensions"\n.nh\n'; \
	  printf '.SH NAME\nxt_smtplimit \\- limit new connections per source address\n'; \
	  printf '.SH SYNOPSIS\n\\fBiptables\\fP ... \\fB\\-m smtplimit\\fP \\fB\\-\\-smtplimit\\-name\\fP \\fIname\\fP \\fB\\-\\-smtplimit\\fP \\fIrate\\fP [\\fIoptions\\fP]\n'; \
	  printf '.SH DESCRIPTION\n'; cat $<; \
	  printf '.SH SEE ALSO\n\\fBiptables\\-extensions\\fP(8), \\fBiptables\\fP(8)\n'; } >$@

$(PLUGIN): userspace/libxt_smtplimit.c $(SHARED_SRC) $(SHARED_HDR)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -Iinclude/uapi $(XT_CFLAGS) \
		-o $@ userspace/libxt_smtplimit.c $(SHARED_SRC)

$(UNIT): tests/unit/test_rate.c tests/unit/tap.h $(SHARED_SRC) $(SHARED_HDR)
	$(CC) $(CFLAGS) $(WARN) -Iinclude/uapi -o $@ tests/unit/test_rate.c $(SHARED_SRC)

$(UNIT_CMD): tests/unit/test_cmd.c tests/unit/tap.h $(CMD_SRC) $(CMD_HDR)
	$(CC) $(CFLAGS) $(WARN) -Iinclude/uapi -o $@ tests/unit/test_cmd.c $(CMD_SRC)

# The rate arithmetic and the proc write's syntax (C), the tests' GCRA
# oracle and the bench report (Python, on bench/results.json).
unit: $(UNIT) $(UNIT_CMD)
	$(UNIT)
	$(UNIT_CMD)
	PYTHONPATH=tests python3 tests/unit/test_gcra.py
	PYTHONPATH=tests python3 tests/unit/test_benchreport.py

lint:
	@KDIR=$(KDIR) scripts/lint

# Host-built programs the guest tests run: the fuzzers' (tests/fuzz) and
# the IPv6 many-source sender of the stress test and the bench.
SEND6 := tests/tools/send6
$(SEND6): tests/tools/send6.c
	$(CC) $(CFLAGS) $(WARN) -o $@ $<

test-tools: $(SEND6)
	$(MAKE) -C tests/fuzz

# Fuzzers (iptables options, raw IPT_SO_SET_REPLACE and nft_compat match
# data, proc writes), the 1,000,000-source flood and the 60 s stress mix,
# each in a guest of Debian's kernel. FUZZ_CASES: cases per fuzzer.
FUZZ_CASES ?= 300
fuzz: all test-tools
	XT_FUZZ_CASES=$(FUZZ_CASES) tests/vm/run --timeout 14400 -- tests/fuzz/guest-fuzz

flood: all
	tests/vm/run --smp 2 --mem 2048 -- tests/flood/guest-flood

stress: all test-tools
	tests/vm/run --smp 4 --mem 2048 -- tests/stress/guest-stress

# The guest suite, the fuzzers (10,000 cases), the flood and the stress mix
# on Debian's kernels, their PREEMPT_RT flavours and the debug kernels built
# once and cached; KERNELS picks some (tests/check-kernels names them; empty:
# all).
KERNELS ?=
check-kernels:
	@scripts/install-deps --quiet --kernels
	@tests/check-kernels $(KERNELS)

# The suite's proof that it bites: each mutant of tests/mutants/list (a
# fault the module builds with SMTPLIMIT_MUTANT=N) must fail a test.
# mutants-build: only compile them all (CI).
mutants: plugin
	@scripts/install-deps --quiet
	@tests/mutants/run

mutants-build:
	@tests/mutants/run --build-only

# xt_smtplimit against xt_hashlimit in one guest boot; QUICK=1: one short
# round of every scenario, to keep the bench working (figures not judged).
bench:
	@scripts/install-deps --quiet
	@QUICK=$(QUICK) tests/bench/run

check:
	@scripts/install-deps --quiet
	@scripts/install-demo-deps --quiet
	@tests/run-all

demo:
	@scripts/install-deps --quiet
	@tests/demo-host

install: all
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=updates modules_install
	depmod -a $(KVER)
	install -D -m 0644 $(PLUGIN) $(DESTDIR)$(XTLIBDIR)/libxt_smtplimit.so
	install -D -m 0644 $(MANPAGE) $(DESTDIR)/usr/share/man/man8/xt_smtplimit.8
	install -D -m 0755 $(ADMIN) $(DESTDIR)/usr/sbin/smtplimit
	install -D -m 0644 userspace/smtplimit.8 $(DESTDIR)/usr/share/man/man8/smtplimit.8

dkms-install:
	rm -rf $(DKMS_SRC)
	install -d $(DKMS_SRC)
	cp --parents $(DKMS_FILES) $(DKMS_SRC)
	dkms add xt_smtplimit/$(VERSION)
	dkms install xt_smtplimit/$(VERSION) -k $(KVER)

# dkms remove keeps /usr/src/xt_smtplimit-VERSION: remove it too.
dkms-uninstall:
	-dkms remove xt_smtplimit/$(VERSION) --all
	rm -rf $(DKMS_SRC)

uninstall:
	rm -f /lib/modules/$(KVER)/updates/xt_smtplimit.ko
	depmod -a $(KVER)
	rm -f $(DESTDIR)$(XTLIBDIR)/libxt_smtplimit.so
	rm -f $(DESTDIR)/usr/share/man/man8/xt_smtplimit.8
	rm -f $(DESTDIR)/usr/sbin/smtplimit $(DESTDIR)/usr/share/man/man8/smtplimit.8

clean:
	-$(MAKE) -C $(KDIR) M=$(CURDIR) clean 2>/dev/null
	rm -f $(PLUGIN) $(MANPAGE) $(ADMIN) $(UNIT) $(UNIT_CMD) $(SEND6)
	-$(MAKE) -C tests/fuzz clean

# Debian packages xt-smtplimit-dkms and iptables-smtplimit (debian/), built in
# a copy of the tree under $(DEB_DIR), where the .debs and .changes stay;
# the changelog is written there with $(VERSION). deb-test: tests/deb-test.
DEB_DIR := build/deb
.PHONY: deb deb-test dkms-src

deb:
	@scripts/build-deb $(VERSION) $(DEB_DIR)

deb-test:
	@tests/deb-test

# The DKMS source tree, $(DKMS_FILES) alone, under $(DESTDIR) (debian/rules).
dkms-src:
	install -d $(DESTDIR)$(DKMS_SRC)
	cp --parents $(DKMS_FILES) $(DESTDIR)$(DKMS_SRC)
