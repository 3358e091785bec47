"""Starting or joining Ray for rollout actors, evaluation tasks and sweeps. Ray is imported only
inside these functions, so the learner runs without Ray installed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from mtrl.errors import MtrlError


def init_ray(ray_cfg: Any, workers: int) -> tuple[Any, bool]:
    """Start an embedded local Ray (no dashboard) or join `ray.address`.

    Returns (the ray module, whether this call started it)."""
    try:
        import ray
    except ImportError:
        raise MtrlError("rollout.workers > 0 needs Ray: pip install 'ray>=2.40', or set rollout.workers=0") from None
    if ray.is_initialized():
        return ray, False
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if ray_cfg.address is None:  # "local": always a fresh embedded Ray, never a stale `ray start` cluster
        # Ray starts its worker processes at niceness +15; mtrl's rollout actors and sweep runs are
        # the work itself, so they run at the driver's niceness (as Ray's own job drivers do)
        os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs["address"] = "local"
        kwargs["num_cpus"] = ray_cfg.num_cpus or max(workers, os.cpu_count() or 1)
        kwargs["_node_ip_address"] = "127.0.0.1"
    else:
        kwargs["address"] = ray_cfg.address
    try:
        with _loopback_only(ray_cfg.address is None):
            ray.init(**kwargs)
    except ConnectionError as exc:
        raise MtrlError(f"could not connect to Ray at ray.address={ray_cfg.address!r}: {exc}") from None
    except ray.exceptions.AuthenticationError:
        raise MtrlError(
            f"the Ray cluster at ray.address={ray_cfg.address!r} wants its auth token: export "
            "RAY_AUTH_MODE=token and copy the head's ~/.ray/auth_token here (scripts/ray_cluster.sh)"
        ) from None
    return ray, True


@contextlib.contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """Keep an embedded Ray's node address on 127.0.0.1, so that its GCS, raylet, workers and
    runtime-env agent listen on loopback only. Ray 2.60 rewrites a loopback node address to the
    machine's routable IP (`ray._private.services.resolve_ip_for_localhost`), and its servers then
    listen on every interface; a single-machine Ray needs none of them reachable from outside.
    Where that private function is gone (another Ray), Ray's own choice stands."""
    from ray._private import services

    original = getattr(services, "resolve_ip_for_localhost", None)
    if not enabled or original is None:
        yield
        return
    services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = original
