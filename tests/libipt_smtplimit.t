# xt_smtplimit's IPv4-only lines: srcmask 32 is the default (not saved), 33 too long.
:INPUT,FORWARD,OUTPUT
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 32 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 33 --smtplimit-name a;;FAIL
