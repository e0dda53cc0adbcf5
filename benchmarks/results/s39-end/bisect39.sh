#!/bin/bash
OUT=/tmp/s39-end
log(){ echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) $*" >> $OUT/log.txt; }
while pgrep -f "benchmarks.quality --days" >/dev/null; do sleep 2; done
log quality-end
cd /work/main
D="python3 -m benchmarks.control_latency --connectors 1000 --repeats 3"
log dr-pregap; $D --server-tree /tmp/t-pregap > $OUT/dr-1000-pregap.txt 2>&1; log dr-pregap-end rc=$?
log dr2; $D > $OUT/dr-1000-2.txt 2>&1; log dr2-end rc=$?
log dr-base2; $D --server-tree /tmp/base39 > $OUT/dr-1000-base2.txt 2>&1; log dr-base2-end rc=$?
log dr-pregap2; $D --server-tree /tmp/t-pregap > $OUT/dr-1000-pregap2.txt 2>&1; log dr-pregap2-end rc=$?
log demo; (cd /tmp && python3 -m smartcharge demo --port 0) > $OUT/demo.txt 2>&1; log demo-end rc=$?
log done
