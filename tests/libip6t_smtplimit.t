:INPUT,FORWARD,OUTPUT
-m smtplimit --smtplimit 2/h --smtplimit-burst 2 --smtplimit-name smtp_limit;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 2 --smtplimit-name smtp_limit;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 64 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 32 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-srcmask 32 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 128 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-srcmask 128 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 0 --smtplimit-name a;-m smtplimit --smtplimit-upto 2/hour --smtplimit-burst 5 --smtplimit-srcmask 0 --smtplimit-name a;OK
-m smtplimit --smtplimit-above 1/d --smtplimit-srcmask 48 --smtplimit-htable-max 100 --smtplimit-name a;-m smtplimit --smtplimit-above 1/day --smtplimit-burst 5 --smtplimit-srcmask 48 --smtplimit-htable-max 100 --smtplimit-name a;OK
-m smtplimit --smtplimit-upto 2/h --smtplimit-srcmask 129 --smtplimit-name a;;FAIL
-m smtplimit --smtplimit-upto 2/h;;FAIL
