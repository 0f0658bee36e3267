# SPDX-License-Identifier: GPL-2.0
# Sourced by tests/guest-dkms and tests/guest-deb: the checks of a guest
# whose module tree holds xt_smtplimit built by DKMS on the host. Nothing
# is insmod'ed: iptables must load the module by its alias. Counts with
# tests/results.sh.
. "$(dirname "${BASH_SOURCE[0]}")/guest-lib.sh"
. "$REPO/tests/results.sh"
netfilter_load

# installed_unloaded: no rule has loaded the module yet.
installed_unloaded() {
	check "module not loaded before the rule" bash -c '! grep -q "^xt_smtplimit " /proc/modules'
}

# installed_seed BACKEND WHAT: the seed scenario passes on iptables-BACKEND
# with WHAT (the module, and the extension it was given).
installed_seed() {
	"$REPO/tests/functional/test_smtplimit.py" --backend "$1" seed_scenario | tee "/tmp/seed-$1.log"
	check "seed scenario with $2 (iptables-$1)" grep -q "^ok .* seed_scenario" "/tmp/seed-$1.log"
}

# installed_loaded: iptables loaded the module, from DKMS's updates/dkms.
installed_loaded() {
	check "iptables loaded the module by its alias" grep -q "^xt_smtplimit " /proc/modules
	check "the module came from updates/dkms" \
		bash -c '[[ $(modinfo -n xt_smtplimit) == /lib/modules/$(uname -r)/updates/dkms/xt_smtplimit.ko* ]]'
}
