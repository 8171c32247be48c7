#!/usr/bin/env bash
# The queue of full-length CIFAR runs behind the README's table: the study configs/studies/cifar_queue.yaml
# (seed 7531, float32, one at a time, in its order). Re-running it skips finished runs and resumes an
# interrupted one at its last finished epoch (the run trainer's own resume); runs already finished and
# shipped to measured/ (same config) are skipped too, so a queue restarted on a fresh machine goes on
# where the shipped ones end (an unfinished run starts over there: its checkpoint stayed on the old machine).
#   nohup bench/longrun_queue.sh /path/to/longruns/results > /path/to/longruns/queue.log 2>&1 &
# Run it from a work tree pinned at one commit (git worktree add --detach ../longrun HEAD) so that
# every epoch of a run comes from the same code. The runs take priority over tests beside them (nice -5;
# without root, nice says so and runs them at normal priority).
set -u
out=${1:?usage: bench/longrun_queue.sh RESULTS_DIR (outside the tracked files) [reproduce.py options, e.g. --only NAME]}
shift
export SUPERMASK_DATA_DIR=${SUPERMASK_DATA_DIR:-$(cd "$(dirname "$0")/../../shared/datasets" 2>/dev/null && pwd)}
cd "$(dirname "$0")/.."
echo "$(date -u +%FT%TZ) start cifar_queue (commit $(git rev-parse --short HEAD))"
nice -n -5 python reproduce.py cifar_queue --skip-shipped --out "$out" "$@"
echo "$(date -u +%FT%TZ) end cifar_queue exit $?"
