#!/usr/bin/env bash
# Wall time of one MBPO iteration of the brief (configs/mbpo/halfcheetah_mbpo.yaml, max_epochs 1) at each given
# commit, one thread pinned to core ${CORE:-0}, each commit's own code and config (checked out in a temporary worktree).
#   bash benchmarks/mbpo_iteration.sh ee8721f b449f74
# Prints the process wall time and the iteration's logged parts (SAC updates, model training, rollouts).
set -euo pipefail
repo=$(git rev-parse --show-toplevel); out=$(mktemp -d)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for commit in "$@"; do
  tree=$out/tree_$commit; git -C "$repo" worktree add -q --detach "$tree" "$commit"
  start=$SECONDS
  (cd "$tree" && PYTHONPATH=$tree taskset -c "${CORE:-0}" python -m mbrl_lightning fit \
    --config configs/mbpo/halfcheetah_mbpo.yaml --trainer.max_epochs 1 \
    --trainer.logger.init_args.save_dir "$out/logs" --trainer.logger.init_args.name "$commit" > "$out/$commit.log" 2>&1)
  echo "$commit: $((SECONDS - start)) s wall"
  git -C "$repo" worktree remove --force "$tree"
done
python - "$out/logs" "$@" <<'PY'
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for commit in sys.argv[2:]:
    ea = EventAccumulator(sorted(glob.glob(f"{sys.argv[1]}/{commit}/version_*/events*"))[-1]); ea.Reload()
    print(commit, {t: round(ea.Scalars(t)[-1].value, 1) for t in ea.Tags()["scalars"] if t.endswith("seconds")})
PY
