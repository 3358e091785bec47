#!/usr/bin/env bash
# MOORE's full Meta-World budget, 2M env steps per task, for MOORE and the MTSAC / multi-head /
# Soft Modularization / CARE / PaCo baselines (MT10; MOORE only on MT50), on one GPU machine with many cores: the learner on the GPU, Ray rollout workers on the
# CPUs. Usage: scripts/metaworld_sac_full.sh [mt10|mt50] [workers] [seeds...]
#   scripts/metaworld_sac_full.sh mt10 10 0 1 2
# Each run writes runs/metaworld-<suite>-<method>-s<seed>/ (TensorBoard, checkpoints, eval.json
# with the per-task success of the v3 protocol: 50 episodes per task, one per goal variant). An
# interrupted run continues with the same command (it resumes from its newest checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:-mt10}
workers=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
seeds=${*:-0 1 2}
slots=$([ "$suite" = mt10 ] && echo 10 || echo 50)
methods="moore"
[ "$suite" = mt10 ] && methods="moore mtsac multihead softmod care paco"
for seed in $seeds; do
  for method in $methods; do
    case $method in
      moore) config=configs/metaworld_${suite}_moore_sac.yaml ;;
      mtsac) config=configs/metaworld_mt10_mtsac.yaml ;;
      multihead) config=configs/metaworld_mt10_multihead_sac.yaml ;;
      softmod) config=configs/metaworld_mt10_softmod_sac.yaml ;;
      care) config=configs/metaworld_mt10_care_sac.yaml ;;
      paco) config=configs/metaworld_mt10_paco_sac.yaml ;;
    esac
    run=runs/metaworld-$suite-$method-s$seed
    resume=()
    [ -d "$run/checkpoints" ] && [ -n "$(ls -A "$run/checkpoints")" ] && resume=("resume=$run")
    [ -f "$run/eval.json" ] && { echo "$run: done"; continue; }
    # num_envs must be a multiple of the workers: round the slots up to one
    envs=$(( (slots + workers - 1) / workers * workers ))
    .venv/bin/mtrl train "$config" seed="$seed" run_dir="$run" "${resume[@]}" learner.device=cuda \
      rollout.workers="$workers" rollout.num_envs="$envs"
  done
done
