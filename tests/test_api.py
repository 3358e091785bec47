"""The public API (`mtrl.train`, `mtrl.load_config`, `mtrl.evaluate`, `mtrl.list_configs`), plug-in
modules (`mtrl train --import`, the `plugins` key, also on Ray workers), packaged configs by name,
and plug-in tracebacks under `--debug`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import mtrl
from mtrl.errors import ConfigError
from tests.conftest import ROOT, run_cli

# a user's module: a two-task suite of CartPole with different pole lengths, registered on import
SUITE_MODULE = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np
    import mtrl

    def build(task, seed):
        env = gym.make("CartPole-v1")
        env.unwrapped.length = (0.5, 1.0)[task]
        return env

    mtrl.register_suite("user-poles", lambda: mtrl.TaskSuite(
        "user-poles", ("short", "long"), build, gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        gym.spaces.Discrete(2)))
    """
)


def test_train_and_evaluate_a_suite_registered_in_this_script(tmp_path):
    """The README's example: register a suite here, train it with mtrl.train, evaluate it with
    mtrl.evaluate; keyword options are config keys with '__' between sections."""

    def factory() -> mtrl.TaskSuite:
        return mtrl.TaskSuite(
            "script-poles",
            ("short", "long"),
            lambda task, seed: gym.make("CartPole-v1", max_episode_steps=50),
            gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            gym.spaces.Discrete(2),
        )

    mtrl.register_suite("script-poles", factory, overwrite=True)
    run = mtrl.train(
        "toy_mtppo",
        "env.suite=script-poles",
        rollout__workers=0,
        rollout__num_envs=2,
        rollout__steps_per_env=64,
        train__total_steps=512,
        train__eval_episodes=2,
        run_dir=str(tmp_path / "run"),
    )
    assert run == tmp_path / "run" and (run / "eval.json").is_file()
    assert mtrl.load_config(run / "config.yaml").env.suite == "script-poles"
    report = mtrl.evaluate({"ppo": run}, episodes=3)
    (result,) = [r.result for r in report.runs]
    assert [t.task for t in result.tasks] == ["short", "long"] and all(len(t.returns) == 3 for t in result.tasks)
    assert report.methods[0].method == "ppo" and "| ppo |" in report.markdown()
    with pytest.raises(ConfigError, match="train__total_steps"):
        mtrl.load_config("toy_mtppo", _bad=1)
    with pytest.raises(ConfigError, match="unknown config key 'train.total_stepz'"):
        mtrl.load_config("toy_mtppo", train__total_stepz=1)


@pytest.mark.slow  # 15-20 s: an embedded Ray with 2 workers, then mtrl eval
def test_import_a_users_module_with_two_ray_workers(tmp_path):
    """`mtrl train --import FILE.py`: a suite defined in a file outside the working directory
    trains with 2 Ray rollout workers (each imports it from its directory), and the run records it."""
    pytest.importorskip("ray")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/user_poles.py").write_text(SUITE_MODULE)
    (tmp_path / "work").mkdir()
    out = run_cli(
        "train",
        "--import",
        "../mine/user_poles.py",
        str(ROOT / "configs/toy_mtppo.yaml"),
        "env.suite=user-poles",
        "rollout.workers=2",
        "rollout.num_envs=4",
        "rollout.steps_per_env=32",
        "train.total_steps=256",
        "train.eval_episodes=2",
        "ray.num_cpus=2",
        "run_dir=run",
        cwd=tmp_path / "work",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 rollout workers" in out.stdout
    assert yaml.safe_load((tmp_path / "work/run/config.yaml").read_text())["plugins"] == ["../mine/user_poles.py"]
    tasks = [t["task"] for t in json.loads((tmp_path / "work/run/eval.json").read_text())["tasks"]]
    assert tasks == ["short", "long"]
    again = run_cli("eval", "run", "--episodes", "1", cwd=tmp_path / "work")  # the checkpoint's plugins are imported
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize(
    "module, source, message",
    [
        ("no_such_module_here", None, "plugins: no module named 'no_such_module_here'"),
        ("broken_plugin", "raise ValueError('bad setting in the plug-in')", "plugins: importing 'broken_plugin' raised "
         "ValueError: bad setting in the plug-in"),
        ("broken_dep", "import no_such_dependency_xyz", "plugins: importing 'broken_dep' raised ModuleNotFoundError"),
    ],
)  # fmt: skip
def test_bad_plugin_modules_are_one_line(tmp_path, module, source, message):
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source + "\n")
    out = run_cli("train", "--import", module, str(ROOT / "configs/toy_mtppo.yaml"), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith("mtrl: error: " + message)


def test_debug_shows_the_plugins_own_line(tmp_path):
    """A plug-in architecture that raises: one line without --debug; with --debug the traceback
    reaches the plug-in's own file and line (the error is chained, not `from None`)."""
    (tmp_path / "bad_arch.py").write_text(
        textwrap.dedent(
            """
            import mtrl

            def build(spec, out_dim, out_gain):
                raise RuntimeError("my architecture is broken")  # the line a plug-in author needs

            mtrl.register_arch("bad-arch", build)
            """
        )
    )
    args = ["train", "--import", "bad_arch", str(ROOT / "configs/toy_mtppo.yaml"), "policy.arch=bad-arch"]
    plain = run_cli(*args, "rollout.workers=0", cwd=tmp_path)
    assert plain.returncode == 2 and plain.stderr.strip().count("\n") == 0
    assert "architecture 'bad-arch': its builder raised RuntimeError: my architecture is broken" in plain.stderr
    debug = run_cli("--debug", *args, "rollout.workers=0", cwd=tmp_path)
    assert debug.returncode != 0
    assert 'bad_arch.py", line 5, in build' in debug.stderr and "the line a plug-in author needs" in debug.stderr


def test_packaged_configs_by_name(monkeypatch, tmp_path):
    configs = mtrl.list_configs()
    assert "moore_paper/minigrid_mt3_moore" in configs and "metaworld_plus/mt10_mtmhsac" in configs
    assert configs["toy_mtppo"] and len(configs) == len(list((ROOT / "configs").rglob("*.yaml")))
    by_name = mtrl.load_config("moore_paper/minigrid_mt3_moore")
    assert by_name == mtrl.load_config(ROOT / "configs/moore_paper/minigrid_mt3_moore.yaml")
    assert mtrl.load_config("mt10_mtmhsac.yaml").env.suite == "metaworld-mt10"  # a unique file name
    with pytest.raises(
        ConfigError, match="config file not found: minigrid_mt3_mooore.*near matches: .*minigrid_mt3_moore"
    ):
        mtrl.load_config("minigrid_mt3_mooore")
    from mtrl.config import packaged

    two = {"a/same": tmp_path / "a.yaml", "b/same": tmp_path / "b.yaml"}
    monkeypatch.setattr(packaged, "packaged_configs", lambda: two)
    with pytest.raises(ConfigError, match="config 'same' is ambiguous: it names a/same, b/same"):
        packaged.resolve_config("same")


def test_configs_and_version_commands():
    out = run_cli("configs")
    assert out.returncode == 0
    line = next(x for x in out.stdout.splitlines() if x.startswith("metaworld_plus/mt10_moore "))
    assert "Meta-World+ protocol: MOORE (MTSAC) on MT10" in line
    names = run_cli("configs", "--names").stdout.split()
    assert names == sorted(names) and "toy_mtppo" in names
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mtrl {mtrl.__version__}"


def test_plugins_key_imports_a_py_file(tmp_path):
    """The config key `plugins` takes module names or .py paths; the run dir records them."""
    path = tmp_path / "somewhere" / "poles_file.py"
    path.parent.mkdir()
    path.write_text(SUITE_MODULE.replace("user-poles", "file-poles"))
    cfg = mtrl.load_config(ROOT / "configs/toy_mtppo.yaml", f"plugins=[{path}]", env__suite="file-poles")
    assert cfg.plugins == [str(path)] and mtrl.get_suite("file-poles").tasks == ("short", "long")
    with pytest.raises(ConfigError, match="plugins: no such file"):
        mtrl.load_config(None, f"plugins=[{tmp_path / 'missing.py'}]")
    with pytest.raises(ConfigError, match="plugins: expected a list"):
        mtrl.load_config(None, "plugins=just_a_name")


def test_public_api_names():
    for name in mtrl.__all__:
        assert getattr(mtrl, name) is not None, name
    with pytest.raises(ConfigError, match="not with a Config object"):
        mtrl.train(mtrl.load_config(None), "seed=1")
    assert Path(mtrl.__file__).with_name("py.typed").is_file()


def test_the_readme_example_runs(tmp_path):
    """The README's Python example, as written, in a fresh directory."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = text.split("## In Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| earth |" in out.stdout and "| mars |" in out.stdout


def test_listing_commands_import_plugins_and_ray_cpu_shortfall_is_refused(tmp_path):
    (tmp_path / "listed.py").write_text(SUITE_MODULE.replace("user-poles", "listed-poles"))
    out = run_cli("suites", "--import", "listed.py", cwd=tmp_path)
    assert out.returncode == 0 and "listed-poles (2 tasks): short, long" in out.stdout
    with pytest.raises(ConfigError, match=r"rollout.workers=3 needs ray.num_cpus >= 3 .*got 2"):
        mtrl.load_config("toy_mtppo", rollout__workers=3, rollout__num_envs=3, ray__num_cpus=2)
    assert mtrl.load_config("toy_mtppo", run_dir=tmp_path / "r").run_dir == str(tmp_path / "r")  # a Path option
    (tmp_path / "textwrap.py").write_text("")  # the name of a module that is already imported
    with pytest.raises(ConfigError, match="is imported as the module 'textwrap', but a module of that name is already"):
        mtrl.load_config(None, f"plugins=[{tmp_path / 'textwrap.py'}]")
