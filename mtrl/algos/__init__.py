"""Learning algorithms behind the `Algorithm` protocol of `mtrl.algos.base`: PPO, GRPO, MT-GRPO
and SAC. They register through the `mtrl.algos` entry-point group, as a third-party one does."""


def register_builtins() -> None:
    """Entry point: register ppo, grpo, mt_grpo and sac."""
    from mtrl.algos.mt_grpo import GRPOAlgorithm, MTGRPOAlgorithm
    from mtrl.algos.ppo import PPOAlgorithm
    from mtrl.algos.sac import SACAlgorithm
    from mtrl.registry import register_algo

    for name, cls in (
        ("ppo", PPOAlgorithm),
        ("grpo", GRPOAlgorithm),
        ("mt_grpo", MTGRPOAlgorithm),
        ("sac", SACAlgorithm),
    ):
        register_algo(name, cls)
