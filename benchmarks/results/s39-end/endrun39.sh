#!/bin/bash
# End measurements of session 39. Usage: endrun37.sh OUTDIR BASETREE
OUT=$1; BASE=$2
mkdir -p $OUT
log(){ echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) $*" >> $OUT/log.txt; }
cd /work/main
python3 -m pip install -q -e '.[test]' >/dev/null 2>&1
L="python3 -m benchmarks.ocpp_load --stations 5000 --interval-s 60 --measure-s 90 --steady --breakdown --after-plans"
log load-5000-a; $L > $OUT/load-5000-a.txt 2>&1; log load-5000-a-end rc=$?
log load-5000-base; $L --server-tree $BASE > $OUT/load-5000-base.txt 2>&1; log load-5000-base-end rc=$?
log load-5000-b; $L > $OUT/load-5000-b.txt 2>&1; log load-5000-b-end rc=$?
log load-5000-base2; $L --server-tree $BASE > $OUT/load-5000-base2.txt 2>&1; log load-5000-base2-end rc=$?
log dr; python3 -m benchmarks.control_latency --connectors 1000 --repeats 3 > $OUT/dr-1000.txt 2>&1; log dr-end rc=$?
log dr-base; python3 -m benchmarks.control_latency --connectors 1000 --repeats 3 --server-tree $BASE > $OUT/dr-1000-base.txt 2>&1; log dr-base-end rc=$?
log quality; python3 -m benchmarks.quality --days demo depot --no-baselines --no-bounds --no-acn > $OUT/quality-demo-depot.txt 2>&1; log quality-end rc=$?
log demo; (cd /tmp && python3 -m smartcharge demo --port 0) > $OUT/demo.txt 2>&1; log demo-end rc=$?
log load-10000; python3 -m benchmarks.ocpp_load --stations 10000 --interval-s 60 --measure-s 90 --steady --breakdown --after-plans --setup-timeout-s 400 > $OUT/load-10000.txt 2>&1; log load-10000-end rc=$?
log done
