# xt_smtplimit's IPv6-only lines: srcmask 64 is the default (not saved), 32 is
# not, 128 is the longest. One table name per srcmask, for the fast mode.
:INPUT,FORWARD,OUTPUT
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 64 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 32 --smtplimit-name m32;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-srcmask 32 --smtplimit-name m32;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 128 --smtplimit-name m128;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-srcmask 128 --smtplimit-name m128;OK
-m smtplimit --smtplimit-above 1/d --smtplimit-srcmask 48 --smtplimit-htable-max 100 --smtplimit-name m48;-m smtplimit --smtplimit-above 1/day --smtplimit-burst 5 --smtplimit-srcmask 48 --smtplimit-htable-max 100 --smtplimit-name m48;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 129 --smtplimit-name a;;FAIL
