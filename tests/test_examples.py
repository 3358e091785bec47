"""The runnable examples in examples/, run as a user runs them: each in its own process with its
fast defaults, in a temporary working directory (their runs/ go there), checked for exit code 0
and for the output that shows it did its job. The package example is used without installing it:
through `mtrl train --import` of its module, and through its entry point declared in a
dist-info directory built from its pyproject.toml."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtrl.run.checkpoint import load_latest
from tests.conftest import ROOT, run_cli

EXAMPLES = ROOT / "examples"
# one torch thread per process: on a busy 2-core machine two threads make these runs several times slower
ENV = {"OMP_NUM_THREADS": "1"}


def run(*args: str | Path, cwd: Path, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `args` (a command line) in `cwd` and capture its output. On a timeout its whole process
    group is stopped (SIGTERM: a run saves and shuts its Ray down; then SIGKILL), so that a hung
    example leaves no Ray behind, and the test fails."""
    with subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV, **(env or {})},
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            pytest.fail(f"{' '.join(map(str, args))} ran past {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python examples/NAME ARGS`, asserting exit code 0."""
    out = run(sys.executable, EXAMPLES / name, *args, cwd=cwd)
    assert out.returncode == 0, f"{name} exited with {out.returncode}:\n{out.stderr[-4000:]}"
    return out


def only_run(cwd: Path, pattern: str) -> Path:
    """The one run directory under cwd/runs that matches `pattern`."""
    (run_dir,) = (cwd / "runs").glob(pattern)
    return run_dir


def test_suite_in_a_script(tmp_path):
    out = example("suite_in_a_script.py", cwd=tmp_path)
    assert "Suite `cartpole-poles`, score = normalised return" in out.stdout, out.stdout
    for task in ("short", "default", "long"):
        assert re.search(rf"^\| {task} \| [01]\.\d{{3}} \|$", out.stdout, re.M), out.stdout
    assert (only_run(tmp_path, "cartpole-poles-ppo-s0-*") / "eval.json").is_file()


def test_suite_in_a_script_serves_mtrl_train_import(tmp_path):
    """The docstring's `mtrl train --import examples/suite_in_a_script.py ...`: the file registers
    its suite when imported, and its main() does not run."""
    out = run_cli(
        "train",
        "--import",
        str(EXAMPLES / "suite_in_a_script.py"),
        "toy_mtppo",
        "env.suite=cartpole-poles",
        "train.total_steps=1536",
        "train.eval_episodes=1",
        f"run_dir={tmp_path / 'run'}",
        cwd=tmp_path,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "ppo/multihead on cartpole-poles (3 tasks)" in out.stdout and "Suite `" not in out.stdout
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["env"]["suite"] == "cartpole-poles"


def test_suite_package_without_installing_it(tmp_path):
    """The package README's no-install route: `mtrl train --import .../suites.py`; the import is
    recorded in the run's config, so `mtrl eval` in a new process finds the suite again."""
    suites = EXAMPLES / "suite_package/mtrl_cartpole/suites.py"
    run_dir = tmp_path / "run"
    out = run_cli(
        "train",
        "--import",
        str(suites),
        "toy_mtppo",
        "env.suite=cartpole-poles-pkg",
        "rollout.workers=0",
        "train.total_steps=1536",
        "train.eval_episodes=1",
        f"run_dir={run_dir}",
        cwd=tmp_path,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "on cartpole-poles-pkg (3 tasks)" in out.stdout
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["plugins"] == [str(suites)]
    ev = run_cli("eval", str(run_dir), "--episodes", "1", cwd=tmp_path, env=ENV)
    assert ev.returncode == 0, ev.stderr[-4000:]
    assert re.search(r"^long\s", ev.stdout, re.M), ev.stdout


def test_suite_package_registers_through_its_entry_point(tmp_path):
    """What `pip install -e examples/suite_package` gives mtrl, without touching the environment:
    the package on the path and a dist-info holding the entry points of its pyproject.toml."""
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    project = tomllib.loads((EXAMPLES / "suite_package/pyproject.toml").read_text())["project"]
    groups = project["entry-points"]
    assert list(groups) == ["mtrl.suites"]
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items())
    )
    path = os.pathsep.join([str(tmp_path), str(EXAMPLES / "suite_package")])
    out = run_cli("suites", cwd=tmp_path, env={"PYTHONPATH": path})
    assert out.returncode == 0 and "skipping" not in out.stderr, out.stderr
    assert "cartpole-poles-pkg (3 tasks): short, default, long" in out.stdout, out.stdout


def test_custom_algorithm(tmp_path):
    out = example("custom_algorithm.py", cwd=tmp_path)
    assert re.search(r"^a2c on toy-mt3 after 3000 env steps: mean return \d+\.\d\d", out.stdout, re.M), out.stdout
    run_dir = only_run(tmp_path, "toy-mt3-a2c-s0-*")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["algo"] == "a2c" and cfg["a2c"] == {"lr": 2e-3, "value_coef": 0.5}
    _, ckpt = load_latest(run_dir)  # its steps reached the parameters: none skipped as non-finite, Adam moved
    assert ckpt["faults"]["nonfinite_updates"] == 0 and ckpt["optimizer"]["state"], ckpt["faults"]


def test_custom_architecture(tmp_path):
    out = example("custom_architecture.py", cwd=tmp_path)
    assert re.search(r"^wide \(width 64\) on toy-mt3 after 3000 env steps: mean return \d", out.stdout, re.M)
    cfg = yaml.safe_load((only_run(tmp_path, "toy-mt3-ppo-s0-*") / "config.yaml").read_text())
    assert cfg["policy"]["arch"] == "wide" and cfg["policy"]["wide"] == {"width": 64, "head_init": 1.0}


def test_custom_curriculum_and_aggregator(tmp_path):
    out = example("custom_curriculum_and_aggregator.py", cwd=tmp_path)
    m = re.search(r"^last task probabilities: sequence-0 (\S+), sequence-1 (\S+), sequence-2 (\S+)$", out.stdout, re.M)
    assert m, out.stdout
    assert sum(map(float, m.groups())) == pytest.approx(1.0, abs=0.02)  # the curriculum's, as logged
    assert re.search(r"^steps that fell back to the mean gradient: \d+$", out.stdout, re.M), out.stdout
    assert "lowest_return + equal_norm on toy-mt3 after 3000 env steps" in out.stdout
    cfg = yaml.safe_load((only_run(tmp_path, "toy-mt3-ppo-s0-*") / "config.yaml").read_text())
    assert cfg["curriculum"]["name"] == "lowest_return" and cfg["learner"]["aggregator"] == "equal_norm"
    assert cfg["curriculum"]["lowest_return"] == {"ema": 0.3}  # its own section, from its options dataclass


def test_evaluate_and_plot(tmp_path):
    out_dir = tmp_path / "out"
    out = example("evaluate_and_plot.py", str(out_dir), cwd=tmp_path)
    for method in ("multihead", "mlp"):
        assert re.search(rf"^\| {method} \| 1 \| \d\.\d{{3}} \[", out.stdout, re.M), out.stdout
        assert (out_dir / "runs" / method / "s0/eval_curve.csv").is_file()
    for name in ("report/report.md", "report/report.json", "report/summary.csv", "report/runs.csv"):
        assert (out_dir / name).stat().st_size > 0, name
    for image in ("curves.png", "eval_curves.png"):
        assert (out_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
        assert f"mtrl: wrote {out_dir / image}" in out.stdout
    assert not (tmp_path / "runs").exists()  # everything went under the output directory


@pytest.mark.slow  # 20-30 s: an embedded Ray with 2 workers
def test_ray_cluster_script_and_ray_workers(tmp_path):
    """`examples/ray_cluster.sh local` runs examples/train_with_ray_workers.py: 2 rollout workers
    on an embedded local Ray with 2 CPUs. The cluster steps need machines; without a step the
    script prints its usage."""
    usage = run("bash", EXAMPLES / "ray_cluster.sh", cwd=tmp_path)
    assert usage.returncode == 2 and "examples/ray_cluster.sh join HEAD_IP:6379" in usage.stderr, usage.stderr
    out = run("bash", EXAMPLES / "ray_cluster.sh", "local", cwd=tmp_path, env={"PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr[-4000:]
    assert "mtrl: 2 rollout workers on 1 Ray node(s)" in out.stdout + out.stderr
    assert re.search(r"^2 Ray workers, 3000 env steps: mean return \d", out.stdout, re.M), out.stdout
    cfg = yaml.safe_load((only_run(tmp_path, "toy-mt3-ppo-s0-*") / "config.yaml").read_text())
    assert cfg["rollout"]["workers"] == 2 and cfg["ray"]["num_cpus"] == 2
