"""The built-in gradient aggregators for `learner.aggregator`: torchjd's (Quinton and Rey 2024,
"Jacobian Descent for Multi-Objective Optimization"), each built from (num_tasks, **options).

They map the Jacobian of the K per-task losses with respect to the shared parameters [K, n] to
one update direction [n]: PCGrad (Yu et al. 2020), CAGrad (Liu et al. 2021), MGDA (Desideri 2012;
Sener and Koltun 2018), Nash-MTL (Navon et al. 2022), Aligned-MTL (Senushkin et al. 2023), IMTL-G
(Liu et al. 2021), DualProj, GradDrop (Chen et al. 2020), ConFIG (Liu et al. 2024), GradVac (Wang
et al. 2021), FairGrad (Ban and Ji 2024), Random (Lin et al. 2021), UPGrad and the plain mean.
CAGrad and Nash-MTL solve a convex program with cvxpy: pip install 'mtrl[aggregators]'.
`make_aggregator` builds a registered one (a built-in or a plug-in) from its config options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtrl.errors import ConfigError, MtrlError
from mtrl.registry import AGGREGATORS, build_with_options

# name -> (torchjd class name, whether it takes num_tasks, default options, what it is)
BUILTINS: dict[str, tuple[str, bool, dict[str, Any], str]] = {
    "mean": ("Mean", False, {}, "the mean of the task gradients"),
    "upgrad": (
        "UPGrad",
        False,
        {},
        "projects each task gradient onto the dual cone of all of them, then averages (Jacobian descent)",
    ),
    "mgda": ("MGDA", False, {}, "the minimum-norm point of the convex hull of the task gradients"),
    "pcgrad": ("PCGrad", False, {}, "projects each task gradient off the others it conflicts with, then averages"),
    "cagrad": ("CAGrad", False, {"c": 0.5}, "the mean gradient, moved to improve the worst task within radius c"),
    "nash_mtl": ("NashMTL", True, {}, "the Nash bargaining solution of the task gradients"),
    "aligned_mtl": ("AlignedMTL", False, {}, "aligns the task gradients' principal components (condition number 1)"),
    "dualproj": ("DualProj", False, {}, "the mean gradient projected onto the dual cone of the task gradients"),
    "graddrop": ("GradDrop", False, {}, "drops gradient coordinates by sign consistency across tasks"),
    "imtl_g": ("IMTLG", False, {}, "weights with equal projections of the update onto every task gradient"),
    "config": ("ConFIG", False, {}, "a conflict-free direction with equal cosine to every task gradient"),
    "gradvac": ("GradVac", False, {}, "sets pairwise cosines toward their running targets (gradient vaccine)"),
    "fairgrad": ("FairGrad", False, {"alpha": 1.0}, "alpha-fair utility maximisation over the task gradients"),
    "random": ("Random", False, {}, "random positive task weights each step (random loss weighting)"),
}


# Their direction does not change when a task's gradient is scaled (tests/test_weighting.py measures
# it for every built-in): Nash-MTL's bargaining solution (Navon et al. 2022) and FairGrad's alpha-fair
# one (Ban and Ji 2024) are invariant to the tasks' scales, IMTL-G equalises the projections on the
# unit task gradients (Liu et al. 2021), ConFIG combines the unit gradients (Liu et al. 2024).
SCALE_INVARIANT = frozenset({"nash_mtl", "fairgrad", "imtl_g", "config"})


def _factory(name: str) -> Callable[..., Any]:
    cls_name, takes_tasks, defaults, doc = BUILTINS[name]

    def make(num_tasks: int, **options: Any) -> Any:
        from torchjd import aggregation  # imported when an aggregator is used: training without one needs no torchjd

        cls = getattr(aggregation, cls_name)
        agg = cls(**({"n_tasks": num_tasks} if takes_tasks else {}), **{**defaults, **options})
        if name == "pcgrad":
            # Yu et al.'s Algorithm 1 sums the projected gradients; mtrl averages them (Pytorch-PCGrad's
            # default reduction), so that without conflicts the step is the mean, as for `mean` and `none`
            agg.weighting.register_forward_hook(lambda _m, _i, weights: weights / num_tasks)
        return agg

    make.__doc__ = f"{doc} (torchjd.aggregation.{cls_name})"
    return make


def solver_errors() -> tuple[type[BaseException], ...]:
    """The errors of a convex solver that did not converge (cvxpy's, used by CAGrad), when cvxpy
    is installed: a declared failure of the aggregator, not a bug."""
    try:
        from cvxpy.error import SolverError
    except ImportError:
        return ()
    return (SolverError,)


def register_builtins() -> None:
    """Entry point: register every built-in aggregator."""
    from mtrl.registry import register_aggregator

    for name in BUILTINS:
        register_aggregator(name, _factory(name), scale_invariant=name in SCALE_INVARIANT)


def make_aggregator(name: str, options: dict[str, Any], num_tasks: int) -> Any:
    """The registered aggregator `name` built with `options`, or one ConfigError naming the problem."""
    factory = AGGREGATORS.get(name)

    def with_packages(k: int, **kwargs: Any) -> Any:
        try:
            return factory(k, **kwargs)
        except ImportError as exc:  # a built-in's optional dependency (cvxpy)
            raise ConfigError(
                f"learner.aggregator={name} needs more packages: pip install 'mtrl[aggregators]' ({exc})"
            ) from None

    agg = build_with_options("aggregator", name, "learner.aggregator_options", with_packages, num_tasks, options)
    if not callable(agg):
        raise MtrlError(
            f"aggregator '{name}': its factory returned {type(agg).__name__}, expected a callable mapping a "
            "Jacobian [K, n] to a direction [n] (e.g. a torchjd Aggregator)"
        )
    return agg
