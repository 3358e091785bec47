"""Every kind of bad input through the `mtrl` command: exit code 2, one line on stderr naming the
problem, no traceback, no code run; and hypothesis fuzzing of the config and override parsers."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtrl.config import load_config
from mtrl.errors import MtrlError
from mtrl.run.cli import main
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = str(ROOT / "configs/toy_mtppo.yaml")


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    target = ""

    def __reduce__(self):
        return (os.mkdir, (_Exploit.target,))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A trained toy run, and every kind of broken file next to it."""
    d = tmp_path_factory.mktemp("bad")
    run = train(
        load_config(
            TOY, [f"run_dir={d / 'run'}", "rollout.workers=0", "train.total_steps=500", "train.eval_episodes=0"]
        )
    )
    ckpt = next((run / "checkpoints").glob("ckpt_*.pt"))
    out = {"run": run, "ckpt": ckpt}
    texts = {
        "empty.yaml": "",
        "invalid.yaml": "seed: [1, 2\n",
        "tag.yaml": "!!python/object/apply:os.system ['echo x']\n",
        "list.yaml": "- 1\n",
        "binary.yaml": None,
    }
    for name, text in texts.items():
        (d / name).write_bytes(b"\xff\xfe\x00\x81" if text is None else text.encode())
        out[name] = d / name
    (d / "zero.pt").write_bytes(b"")
    (d / "truncated.pt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    (d / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    _Exploit.target = str(d / "pwned")
    with open(d / "exploit.pt", "wb") as f:
        pickle.dump({"format": "mtrl-checkpoint", "x": _Exploit()}, f)
    torch.save({"format": "mtrl-checkpoint", "version": 1, "x": _Exploit()}, d / "exploit_zip.pt")
    for name in ("zero.pt", "truncated.pt", "text.pt", "foreign.pt", "exploit.pt", "exploit_zip.pt"):
        out[name] = d / name
    out["pwned"] = d / "pwned"
    return out


CASES = [
    # configs
    ("unknown key", ["train", TOY, "rollout.wrokers=2"], "unknown config key 'rollout.wrokers'"),
    ("unknown section", ["train", TOY, "optim.lr=1"], "unknown config key 'optim'"),
    ("wrong type", ["train", TOY, "train.total_steps=lots"], "train.total_steps: expected an integer"),
    ("wrong type (bool)", ["train", TOY, "ppo.task_norm=3"], "ppo.task_norm: expected true/false"),
    ("out of range", ["train", TOY, "ppo.clip=-1"], "ppo.clip: must be >"),
    ("not finite", ["train", TOY, "ppo.lr=.nan"], "ppo.lr: expected a finite number"),
    ("empty file", ["train", "<empty.yaml>"], "config file is empty"),
    ("invalid YAML", ["train", "<invalid.yaml>"], "invalid YAML"),
    ("YAML python tag", ["train", "<tag.yaml>"], "invalid YAML"),
    ("not a mapping", ["train", "<list.yaml>"], "expected a mapping of keys"),
    ("not text", ["train", "<binary.yaml>"], "not a UTF-8 text file"),
    ("missing file", ["train", "nowhere.yaml"], "config file not found"),
    # overrides
    ("override without =", ["train", TOY, "seed=1", "rollout"], "bad override 'rollout': expected key=value"),
    ("override empty key part", ["train", TOY, "rollout..workers=1"], "bad override 'rollout..workers=1'"),
    ("override into a value", ["train", TOY, "seed.x=1"], "'seed' is not a section"),
    # names
    ("unknown suite", ["train", TOY, "env.suite=minigrid-mt4"], "unknown suite 'minigrid-mt4'"),
    ("unknown Meta-World task", ["train", TOY, "env.suite=metaworld-mt1-fly-v3"], "metaworld-mt1-fly-v3"),
    ("unknown algorithm", ["train", TOY, "algo=dqn"], "algo: unknown algorithm 'dqn'"),
    ("unknown curriculum", ["train", TOY, "curriculum.name=nope"], "unknown curriculum 'nope'"),
    ("unknown arch", ["train", TOY, "policy.arch=transformer"], "policy.arch: unknown architecture 'transformer'"),
    # checkpoints
    ("zero-byte checkpoint", ["eval", "<zero.pt>"], "is empty (0 bytes)"),
    ("truncated checkpoint", ["eval", "<truncated.pt>"], "truncated, corrupt or not a checkpoint file"),
    ("text file as checkpoint", ["eval", "<text.pt>"], "truncated, corrupt or not a checkpoint file"),
    ("foreign torch file", ["eval", "<foreign.pt>"], "is not an mtrl checkpoint"),
    ("plain pickle with code", ["eval", "<exploit.pt>"], "truncated, corrupt or not a checkpoint file"),
    ("torch pickle with code", ["eval", "<exploit_zip.pt>"], "refusing to load"),
    ("no checkpoint at all", ["eval", "nowhere/ckpt.pt"], "no such checkpoint or run directory"),
    ("resume with another arch", ["train", "resume=<run>", "policy.arch=moore"], "was trained with policy"),
    ("resume on another suite", ["train", "resume=<run>", "env.suite=toy-mt2"], "was trained with policy"),
    ("resume a missing run", ["train", "resume=nowhere"], "resume=nowhere: no such run directory"),
    # command line
    ("bad --episodes", ["eval", "<run>", "--episodes", "0"], "--episodes must be >= 1"),
    ("bad --workers", ["eval", "<run>", "--workers", "-1"], "--workers must be >= 0"),
]


@pytest.mark.parametrize("what, args, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(what, args, fragment, files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = []
    for a in args:
        for name, path in files.items():
            a = a.replace(f"<{name}>", str(path))
        argv.append(a)
    before = sorted(p.name for p in files["run"].rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (what, err)
    assert len(lines) == 1 and lines[0].startswith("mtrl: error: ") and fragment in lines[0], (what, err)
    assert "Traceback" not in err
    assert not files["pwned"].exists(), "unpickling ran code"
    assert not list(tmp_path.iterdir()), "a rejected command left files behind"
    assert sorted(p.name for p in files["run"].rglob("*")) == before, "a rejected resume touched the run"


def test_debug_shows_the_traceback(files, capsys):
    with pytest.raises(MtrlError, match="is empty"):
        main(["--debug", "eval", str(files["zero.pt"])])


# ---- fuzzing: the config and override parsers either load or raise the clean error ----

KEYS = [
    "seed",
    "algo",
    "run_dir",
    "env",
    "env.suite",
    "env.max_episode_steps",
    "rollout.workers",
    "rollout.num_envs",
    "ppo.lr",
    "ppo.clip",
    "ppo.task_norm",
    "policy.arch",
    "policy.hidden",
    "train.total_steps",
    "curriculum.name",
    "sac.tau",
    "grpo.group_size",
    "x",
    "rollout",
    "ppo.lr.x",
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["moore", "toy-mt3", "ppo"]),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _loads_or_clean_error(path, overrides) -> None:
    try:
        load_config(path, overrides)
    except MtrlError as exc:
        assert "\n" not in str(exc) and str(exc)


@FUZZ
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=10))
        ),
        max_size=4,
    )
)
def test_fuzz_override_parser(overrides):
    _loads_or_clean_error(TOY, overrides)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_fuzz_config_files(data, tmp_path):
    import yaml

    nested: dict = {}
    for key, value in data.items():  # dotted keys become sections
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[leaf] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(nested) if nested else "")
    _loads_or_clean_error(path, [])


@FUZZ
@given(text=st.text(max_size=80))
def test_fuzz_raw_yaml_text(text, tmp_path):
    path = tmp_path / "raw.yaml"
    path.write_text(text, encoding="utf-8")
    _loads_or_clean_error(path, [])
