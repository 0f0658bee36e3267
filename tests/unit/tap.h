/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host unit tests' one result helper: CHECK(cond, fmt, ...) prints a
 * TAP-like "ok N - ..." or "not ok N - ... (file:line)" line, and
 * tap_done(name) the total line "NAME: N passed, N failed" that
 * tests/run-all tallies, returning the exit status.
 */
#ifndef _SMTPLIMIT_TAP_H
#define _SMTPLIMIT_TAP_H

#include <stdarg.h>
#include <stdio.h>

static unsigned int passed, failed;

#define CHECK(cond, ...) check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((format(printf, 4, 5)))
static void check(int ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s %u - ", ok ? "ok" : "not ok", passed + failed + 1);
	vprintf(fmt, ap);
	if (!ok)
		printf("  (%s:%d)", file, line);
	printf("\n");
	va_end(ap);
	if (ok)
		passed++;
	else
		failed++;
}

static int tap_done(const char *name)
{
	printf("%s: %u passed, %u failed\n", name, passed, failed);
	return failed ? 1 : 0;
}

#endif
