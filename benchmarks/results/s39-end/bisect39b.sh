#!/bin/bash
OUT=/tmp/s39-end
log(){ echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) $*" >> $OUT/log.txt; }
while pgrep -f bisect39.sh >/dev/null; do sleep 2; done
cd /work/main
L="python3 -m benchmarks.ocpp_load --stations 5000 --interval-s 60 --measure-s 90 --steady --breakdown --after-plans"
log load-5000-pregap; $L --server-tree /tmp/t-pregap > $OUT/load-5000-pregap.txt 2>&1; log load-5000-pregap-end rc=$?
log load-5000-c; $L > $OUT/load-5000-c.txt 2>&1; log load-5000-c-end rc=$?
log done2
