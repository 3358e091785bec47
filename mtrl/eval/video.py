"""Videos of a policy acting: one GIF per task (`mtrl eval --video DIR`).

Frames come from the env's own `render()` in "rgb_array" mode: MiniGrid draws with numpy, and
Meta-World through MuJoCo's offscreen renderer, which needs an OpenGL backend chosen before
MuJoCo is imported (`choose_mujoco_gl`). GIFs (imageio's pillow writer) need no ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch

from mtrl.collect.episodes import run_episodes
from mtrl.env.suite import TaskSuite
from mtrl.errors import MtrlError
from mtrl.eval.evaluate import episode_seeds

if TYPE_CHECKING:
    from mtrl.nn.policy import Policy

GL_BACKENDS = ("egl", "osmesa")
_PROBE = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"


def choose_mujoco_gl() -> str | None:
    """Set MUJOCO_GL to the first offscreen backend that can make a context here (egl, then
    osmesa), unless the user set it; None when MuJoCo is not installed or nothing works (MuJoCo
    envs then fail to render with `RenderError`'s message). Each probe runs in a subprocess,
    because MuJoCo fixes its backend when first imported."""
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    if find_spec("mujoco") is None:
        return None
    for backend in GL_BACKENDS:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        if subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120).returncode == 0:
            os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    return None


def _frame(env, task: str, max_side: int) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as exc:  # noqa: BLE001 (any renderer failure gets the same advice)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # the half-built MuJoCo viewer raises again from __del__ at exit; this error says it all
        sys.unraisablehook = lambda _: None
        raise MtrlError(
            f"task '{task}' cannot render offscreen ({first}). MuJoCo envs need an OpenGL backend: "
            "install EGL (a GPU driver) or OSMesa (Debian: apt install libosmesa6), or set "
            "MUJOCO_GL"
        ) from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise MtrlError(
            f"task '{task}': render() returned {type(frame).__name__}, expected an RGB array "
            "(the env must support render_mode='rgb_array')"
        )
    if max(frame.shape[:2]) > max_side:  # MuJoCo renders 480x480: halve the GIF's size
        from PIL import Image

        h, w = frame.shape[:2]
        scale = max_side / max(h, w)
        frame = np.asarray(
            Image.fromarray(frame).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
        )
    return frame


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    """Write the step number in the top-left corner: viewers see the time, and no two frames are
    identical (the GIF writer would merge identical frames and lose the one-frame-per-step count)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((3, 2), text)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


def record_videos(
    policy: Policy,
    suite: TaskSuite,
    out_dir: Path,
    seed: int,
    greedy: bool,
    max_episode_steps: int | None = None,
    fps: int = 15,
    max_side: int = 256,
) -> list[tuple[Path, int]]:
    """Run one evaluation episode per task (the first evaluation seed) and write
    out_dir/<task>.gif: the reset frame plus one frame per step, at most `max_side` pixels a
    side. Returns (path, frame count)."""
    import imageio.v2 as imageio

    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = episode_seeds(suite, 1, seed)
    device = next(policy.parameters()).device
    written = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, task in enumerate(suite.tasks):
            frames: list[np.ndarray] = []

            def render(i: int, env: gym.Env, task: str = task, frames: list = frames) -> None:
                env.unwrapped.render_mode = "rgb_array"  # gymnasium envs read it at render time
                frames.append(_frame(env, task, max_side))

            run_episodes(policy, suite, [k], [int(seeds[k])], greedy, max_episode_steps, device, render)
            path = out_dir / f"{task}.gif"
            imageio.mimsave(path, [_caption(f, f"t={i}") for i, f in enumerate(frames)], duration=1000 / fps, loop=0)
            written.append((path, len(frames)))
    return written
