"""Train mtrl's MOORE policy with RLlib PPO on an mtrl suite, then evaluate it with `mtrl eval`.

  pip install -e ".[rllib]"
  python scripts/rllib_moore.py --iters 20 --out runs/rllib_moore         # about 30k env steps
  python scripts/rllib_moore.py --suite metaworld-mt10 --num-experts 4 --iters 200
  python scripts/rllib_moore.py --suite toy-mt3 --set policy.hidden=64 --env-runners 1 --envs-per-runner 12 \
      --steps-per-env 64 --lr 1e-3 --iters 40 --eval-every 1 --eval-episodes 16 --out runs/rllib_toy

RLlib does the sampling (env runners on Ray actors) and the PPO update; mtrl supplies the MOORE
RLModule, per-task advantage normalisation after GAE, the suite's envs and the per-task metrics
(mtrl.rllib.ppo_config). The policy is exported as an mtrl run directory (also on Ctrl-C), which
`mtrl eval` scores under the suite's protocol.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="minigrid-mt3", help="an mtrl suite (`mtrl suites` lists them)")
    p.add_argument("--arch", default="moore", help="an mtrl architecture (`mtrl archs`)")
    p.add_argument("--num-experts", type=int, default=2, help="experts k of moore / moe (MOORE: 2 for MiniGrid MT3)")
    p.add_argument(
        "--curriculum", default=None, help="an mtrl curriculum choosing each episode's task (`mtrl curricula`)"
    )
    p.add_argument("--iters", type=int, default=20, help="RLlib training iterations")
    p.add_argument("--env-runners", type=int, default=2, help="RLlib env runners (Ray actors)")
    p.add_argument("--envs-per-runner", type=int, default=6, help="sub-envs per env runner")
    p.add_argument("--steps-per-env", type=int, default=128, help="rollout fragment length")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="RLlib's and the envs' seed")
    p.add_argument("--out", type=Path, default=Path("runs/rllib_moore"), help="the exported mtrl run directory")
    p.add_argument(
        "--eval-episodes", type=int, default=None, help="episodes per task for mtrl eval (default: the suite's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an mtrl config override for the policy, env or curriculum (e.g. policy.hidden=64); repeatable",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also export and score the policy with mtrl's evaluation every this many iterations (0: only at the end)",
    )
    args = p.parse_args()
    for name in ("iters", "env_runners", "envs_per_runner", "steps_per_env", "num_experts"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.eval_every < 0:
        p.error(f"--eval-every must be >= 0, got {args.eval_every}")
    return args


def main() -> None:
    args = parse_args()
    import ray
    import torch
    from tqdm import tqdm

    from mtrl.errors import MtrlError
    from mtrl.eval.evaluate import default_episodes, evaluate
    from mtrl.rllib import export_checkpoint, ppo_config
    from mtrl.run.checkpoint import load_latest, policy_from_checkpoint

    try:
        config = ppo_config(
            args.suite,
            arch=args.arch,
            num_experts=args.num_experts,
            curriculum=args.curriculum,
            seed=args.seed,
            overrides=tuple(args.set),
        )
    except MtrlError as exc:
        sys.exit(f"rllib_moore: {exc}")
    batch = args.env_runners * args.envs_per_runner * args.steps_per_env
    config = config.env_runners(
        num_env_runners=args.env_runners,
        num_envs_per_env_runner=args.envs_per_runner,
        rollout_fragment_length=args.steps_per_env,
    ).training(
        train_batch_size_per_learner=batch,
        minibatch_size=batch // 4,
        num_epochs=4,
        lr=args.lr,
        gamma=0.99,
        lambda_=0.95,
        clip_param=0.2,
        entropy_coeff=0.01,
        vf_loss_coeff=0.5,
        grad_clip=0.5,
        use_kl_loss=False,
    )
    ray.init(address="local", num_cpus=args.env_runners + 1, include_dashboard=False, log_to_driver=False)
    try:
        algo = config.build_algo()
    except MtrlError as exc:
        ray.shutdown()
        sys.exit(f"rllib_moore: {exc}")
    try:
        bar = tqdm(range(args.iters), desc="rllib ppo", unit="iter")
        for i in bar:
            result = algo.train()
            bar.set_postfix(
                {
                    task[-12:]: "-" if s["episodes"] == 0 else f"{s['return_mean']:.2f}"
                    for task, s in result["mtrl"].items()
                }
            )
            if args.eval_every and (i + 1) % args.eval_every == 0:  # mtrl's own protocol on the export
                with (
                    torch.random.fork_rng()
                ):  # building the policy draws from torch's RNG, which RLlib's learner uses too
                    policy, suite, _ = policy_from_checkpoint(
                        load_latest(export_checkpoint(algo, args.out))[1], torch.device("cpu")
                    )
                score = evaluate(policy, suite, default_episodes(suite, args.eval_episodes), args.seed).mean_return
                bar.write(
                    f"iteration {i} ({result['env_runners']['num_env_steps_sampled_lifetime']} env steps): "
                    f"mtrl evaluation mean return {score:.3f}"
                )
    except KeyboardInterrupt:
        print("\nrllib_moore: interrupted; exporting the policy as it is", file=sys.stderr)
    finally:
        ckpt = export_checkpoint(algo, args.out)
        algo.stop()
        ray.shutdown()
        print(f"rllib_moore: exported {ckpt}")
    cmd = [sys.executable, "-m", "mtrl", "eval", str(args.out)]
    if args.eval_episodes is not None:
        cmd += ["--episodes", str(args.eval_episodes)]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
