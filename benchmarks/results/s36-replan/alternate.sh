#!/bin/sh
# before/after in the same minutes: main's tree and the branch's, alternated.
#   sh alternate.sh MAIN_TREE BRANCH_TREE ROUNDS ALTERNATIONS   (from this folder)
main=$1; branch=$2; rounds=$3; alt=$4
for i in $(seq "$alt"); do
  for tree in "$main" "$branch"; do
    echo "== $tree $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    TREE=$tree python3 steady_runs.py on "$rounds" 2>&1 | grep -v "^ "
    echo "-- stages"
    PYTHONPATH=$tree python3 ../../replan_stages.py phase on warm 2 2>&1 | tail -2
  done
done
echo "== end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
