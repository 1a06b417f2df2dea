#!/usr/bin/env bash
# Grade every GPU of every node of a Slurm allocation into one PostgreSQL database.
#
#   export GPUHEALTH_DB=postgresql://gpuhealth:SECRET@db.example:5432/gpuhealth
#   sbatch --nodes=16 deploy/gpuhealth-slurm.sh            # one task per node, all its GPUs
#
# Each node runs `gpuhealth grade --gpus all` once (one worker process per GPU, supervised);
# records are journaled to $GPUHEALTH_RUNS/<host>/ on shared or local disk, signed when the
# node has a key, and added to $GPUHEALTH_DB. If the database is unreachable from a node the
# results stay in its run folder: `gpuhealth sync $GPUHEALTH_RUNS` later adds them, without
# duplicates. Exit status per node: 0 all cards A/B/C, 1 a card D/F, 3 a card INCOMPLETE.
#SBATCH --job-name=gpuhealth
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --time=00:30:00
#SBATCH --output=gpuhealth-%N-%j.out
set -euo pipefail

: "${GPUHEALTH_DB:?set GPUHEALTH_DB to the PostgreSQL URL, e.g. postgresql://user:pw@host/db}"
export GPUHEALTH_DB
RUNS="${GPUHEALTH_RUNS:-$PWD/gpuhealth-runs}"
PRESET="${GPUHEALTH_PRESET:-standard}"
GPUHEALTH="${GPUHEALTH:-gpuhealth}"   # e.g. /opt/gpuhealth/.venv/bin/gpuhealth

# --exclusive: nothing else may hold the cards while they are measured.
srun --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c '
  set -uo pipefail
  out="'"$RUNS"'/$(hostname -s)/${SLURM_JOB_ID:-manual}"  # one folder per job: --out never overwrites a record
  mkdir -p "$out"
  "'"$GPUHEALTH"'" grade --gpus all --preset "'"$PRESET"'" --out "$out" --quiet --json \
    > "$out/grades.json"
  status=$?
  echo "$(hostname -s): exit $status"
  exit $status
'
