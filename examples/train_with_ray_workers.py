"""Train with Ray rollout workers: the envs step in worker processes, the learner in this one.

By default mtrl starts an embedded local Ray for the run (loopback only, no dashboard) and stops
it at the end; `--address auto` joins a running Ray cluster instead (examples/ray_cluster.sh
starts one), and the workers are placed on its nodes.

    python examples/train_with_ray_workers.py                          # 2 workers, 2 CPUs, 3k env steps
    python examples/train_with_ray_workers.py --workers 4 --cpus 4 --steps 40000
    RAY_AUTH_MODE=token python examples/train_with_ray_workers.py --address auto --workers 6

The same from the shell: mtrl train toy_mtppo rollout.workers=2 ray.num_cpus=2
"""

from __future__ import annotations

import argparse

import mtrl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Ray rollout workers (default 2)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded local Ray (default 2)")
    parser.add_argument("--address", default=None, help="join this Ray cluster ('auto' or host:port)")
    parser.add_argument("--steps", type=int, default=3_000, help="env steps, over all tasks (default 3000)")
    args = parser.parse_args()

    run_dir = mtrl.train(
        "toy_mtppo",
        rollout__workers=args.workers,  # rollout.num_envs (12 here) is split evenly over the workers
        ray__num_cpus=args.cpus,  # the embedded Ray's CPUs (ignored when joining a cluster)
        ray__address=args.address,  # None: an embedded local Ray, started and stopped by mtrl.train
        train__total_steps=args.steps,
    )
    # evaluation runs in this process here; workers=N would spread its episodes over Ray tasks
    result = mtrl.evaluate(run_dir, episodes=8).runs[0].result
    print(f"{args.workers} Ray workers, {args.steps} env steps: mean return {result.mean_return:.2f} ({run_dir})")


if __name__ == "__main__":
    main()
