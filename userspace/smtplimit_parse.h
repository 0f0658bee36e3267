/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _SMTPLIMIT_PARSE_H
#define _SMTPLIMIT_PARSE_H

#include <stdint.h>

int smtplimit_parse_rate(const char *text, uint32_t *rate);

#endif
