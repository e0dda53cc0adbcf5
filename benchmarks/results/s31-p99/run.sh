#!/bin/bash
# usage: p99-run.sh NAME SERVER_TREE [extra args]
name=$1; tree=$2; shift 2
out=/work/wt-p99/benchmarks/results/s31-p99/load-5000-$name.txt
cd /work/wt-p99
echo "# start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" > $out
SMARTCHARGE_PROBE_TURNS=0.02 SMARTCHARGE_BENCH_STATS=/tmp/p99-$name.json PYTHONPATH=/work/wt-p99 \
  timeout 1500 python3 -m benchmarks.ocpp_load --stations 5000 --interval-s 60 --measure-s 90 \
  --steady --breakdown --setup-timeout-s 900 --server-tree $tree --label $name "$@" 2>&1 \
  | grep -v 'unknown unique id' >> $out
echo "# end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
