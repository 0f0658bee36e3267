# SPDX-License-Identifier: GPL-2.0
# Sourced by the test scripts to count results; each ends with a line
# "NAME: $passed passed, $failed failed".
passed=0 failed=0

# check NAME COMMAND...: one test, from the command's exit status.
check() {
	if "${@:2}"; then
		passed=$((passed + 1)); echo "ok - $1"
	else
		failed=$((failed + 1)); echo "not ok - $1"
	fi
}

# tally FILE WHAT [PREFIX]: add the counts of FILE's last "N passed, N failed"
# line (one starting with PREFIX, when given: a component's own total, not
# a part's); a FILE without one counts as one failure.
tally() {
	local line
	line=$(grep -E "^${3:-.*}[0-9]+ passed, [0-9]+ failed\$" "$1" 2>/dev/null | tail -n 1)
	if [[ -z $line ]]; then
		failed=$((failed + 1)); echo "not ok - $2 printed no result"
		return
	fi
	passed=$((passed + $(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1/' <<<"$line")))
	failed=$((failed + $(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed$/\2/' <<<"$line")))
}
