#!/usr/bin/env bash
# Train and sweep on a Ray cluster.
#
# mtrl's rollout workers (rollout.workers) and the runs of `mtrl sweep` are Ray actors and tasks.
# By default mtrl starts an embedded local Ray for them; with `ray.address=auto` (mtrl train) or
# `--address auto` (mtrl sweep) it joins a running cluster instead and Ray places them on its
# nodes. Every machine needs the same Python environment (mtrl and the suites' extras), and every
# plug-in module must import on every node (an installed package, or a file on a filesystem that
# all nodes mount). Run each step on the machine it names:
#
#   examples/ray_cluster.sh head               # 1. head machine: start Ray, write ~/.ray/auth_token
#   examples/ray_cluster.sh join HEAD_IP:6379  # 2. every other machine, after copying ~/.ray/auth_token
#   examples/ray_cluster.sh train              # 3. head: one run, its rollout workers spread over the nodes
#   examples/ray_cluster.sh sweep OUT          # 4. head: methods x seeds, each run on a free CPU anywhere;
#                                              #    OUT must be on a filesystem every node sees
#   examples/ray_cluster.sh stop               # 5. every machine
#
#   examples/ray_cluster.sh local              # no cluster: 2 rollout workers on an embedded local Ray
#                                              #   (examples/train_with_ray_workers.py; about 20 seconds)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Ray authenticates cluster connections with a token: `head` writes it, and every process that
# joins (ray start, mtrl train, mtrl sweep) presents it when RAY_AUTH_MODE=token.
export RAY_AUTH_MODE=token

case "${1:-}" in
  head | join | stop)
    # start (or stop) Ray with token authentication and no dashboard (scripts/ray_cluster.sh)
    exec "$here/../scripts/ray_cluster.sh" "$@" ;;
  train)
    # The learner stays in this process; ray.address=auto finds the cluster this machine belongs
    # to, and mtrl prints how many nodes the workers landed on. rollout.num_envs must be a
    # multiple of rollout.workers: 8 workers with 3 env slots each.
    mtrl train minigrid_mt3_mtppo ray.address=auto rollout.workers=8 rollout.num_envs=24 ;;
  sweep)
    # Each run reserves --cpus-per-run CPUs on whichever node has them free and trains in-process
    # there; a finished run is skipped and an interrupted one resumes when the command is rerun.
    out=${2:?usage: $0 sweep OUT (a directory every node sees)}
    mtrl sweep moore=moore_paper/minigrid_mt3_moore moe=moore_paper/minigrid_mt3_moe \
      --seeds 0-9 --out "$out" --address auto --cpus-per-run 1
    mtrl plot --source eval --metric return "moore=$out/moore/s*" "moe=$out/moe/s*" --out "$out/eval.png" ;;
  local)
    # The same workers without a cluster: mtrl starts an embedded Ray with 2 CPUs, on 127.0.0.1
    # only, and stops it when training ends.
    "${PYTHON:-python3}" "$here/train_with_ray_workers.py" --workers 2 --cpus 2 ;;
  *)
    sed -n '2,19p' "$0" >&2
    exit 2 ;;
esac
