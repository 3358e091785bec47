"""Configs and run directories written before `config_version` 2 load through the versioned
migration (mtrl.config.migrate): the same resolved settings as their current form, one
deprecation line naming every moved key, and an old run directory still resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mtrl.config import load_config, save_config, to_dict
from mtrl.errors import ConfigError
from mtrl.run.cli import main

DATA = Path(__file__).resolve().parent / "data"
ROOT = DATA.parents[1]


def _deprecations(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]


def test_an_old_run_config_resolves_to_its_current_form(capsys, tmp_path):
    # written by mtrl before config_version 2: every key at its old place, GRPO's optimiser under ppo.*
    old = load_config(DATA / "config_v1_mt_grpo.yaml")
    (line,) = _deprecations(capsys)
    for moved in (
        "curriculum.temperature -> curriculum.learning_progress.temperature and curriculum.worst_task.temperature",
        "curriculum.lp_alpha -> curriculum.learning_progress.alpha",
        "curriculum.plr_beta -> curriculum.plr.beta",
        "curriculum.plr_rho -> curriculum.plr.rho",
        "curriculum.exp3_gamma -> curriculum.exp3.gamma",
        "curriculum.threshold -> curriculum.threshold.level",
        "curriculum.order -> curriculum.threshold.order",
        "ppo.lr -> grpo.lr",
        "ppo.minibatches -> grpo.minibatches",
        "ppo.anneal_lr -> grpo.anneal_lr",
    ):
        assert moved in line
    assert "config_v1_mt_grpo.yaml" in line and "dropped" not in line  # null legacy keys go quietly
    current = load_config(
        ROOT / "configs/minigrid_mt3_mt_grpo.yaml",
        ["curriculum.name=worst_task", "curriculum.worst_task.temperature=0.3", "curriculum.plr.beta=0.2"],
    )
    assert _deprecations(capsys) == []
    assert old.grpo == current.grpo and old.grpo.lr == 5e-4 and old.grpo.minibatches == 16
    assert old.curriculum.own().temperature == 0.3 and old.curriculum.options["plr"].beta == 0.2
    assert old.mt_grpo == current.mt_grpo and old.policy == current.policy
    # saved again, it is a current config: no deprecation, the same settings
    save_config(old, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["config_version"] == 2
    assert load_config(tmp_path / "config.yaml") == old and _deprecations(capsys) == []


def test_old_policy_keys_move_to_the_active_architecture(capsys, tmp_path):
    (tmp_path / "moe.yaml").write_text("policy:\n  arch: moe\n  num_experts: 2\n  head: single\n")
    cfg = load_config(tmp_path / "moe.yaml")
    assert vars(cfg.policy.options["moe"]) == {"num_experts": 2, "head": "single"}
    (line,) = _deprecations(capsys)
    assert "policy.num_experts -> policy.moe.num_experts, policy.head -> policy.moe.head" in line
    # an architecture without the option never read it: dropped, and said so
    (tmp_path / "mh.yaml").write_text("policy:\n  arch: multihead\n  num_experts: 4\n")
    assert "moore" not in load_config(tmp_path / "mh.yaml").policy.options
    (line,) = _deprecations(capsys)
    assert "dropped, without effect: policy.num_experts (policy.arch=multihead has no num_experts)" in line


def test_old_keys_in_a_current_config_name_their_replacement():
    toy = ROOT / "configs/toy_mtppo.yaml"  # config_version: 2
    with pytest.raises(ConfigError, match=r"^curriculum.plr_beta is curriculum.plr.beta since config_version 2$"):
        load_config(toy, ["curriculum.name=plr", "curriculum.plr_beta=0.4"])
    with pytest.raises(ConfigError, match=r"^policy.num_experts is policy.moore.num_experts since config_version 2$"):
        load_config(toy, ["policy.arch=moore", "policy.num_experts=3"])
    # the same override on a file without config_version (version 1) migrates, with a deprecation line
    assert (
        load_config(None, ["config_version=1", "curriculum.name=plr", "curriculum.plr_beta=0.4"]).curriculum.own().beta
        == 0.4
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "config_version: 3\n",
            "config_version: expected an integer from 1 to 2, got 3; the config was written by a newer mtrl",
        ),
        ("config_version: one\n", "config_version: expected an integer from 1 to 2, got 'one'"),
        (
            "curriculum:\n  plr_beta: 0.2\n  plr:\n    beta: 0.3\n",
            "curriculum.plr_beta=0.2 (the key before config_version 2) and curriculum.plr.beta=0.3 disagree",
        ),
        ("config_version: 2\ncurriculum:\n  plr:\n    bta: 0.3\n", "unknown config key 'curriculum.plr.bta'"),
        ("curriculum:\n  uniform:\n    x: 1\n", "curriculum.uniform: curriculum 'uniform' has no options of its own"),
    ],
)
def test_bad_versions_and_conflicts_are_one_line(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_config(tmp_path / "c.yaml")


def test_every_shipped_config_is_current(capsys):
    shipped = sorted([*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
    assert len(shipped) > 40
    for path in shipped:
        assert yaml.safe_load(path.read_text())["config_version"] == 2, path
        load_config(path)
        assert _deprecations(capsys) == [], path


def test_recorded_run_directories_still_load(capsys):
    # the run records under docs/runs were written before config_version 2
    records = sorted(ROOT.glob("docs/runs/**/config.yaml"))
    assert records
    for path in records:
        cfg = load_config(path)
        assert to_dict(cfg)["config_version"] == 2
    assert len(_deprecations(capsys)) == len(records)


def test_an_old_run_directory_resumes(capsys, tmp_path):
    # config.yaml as mtrl wrote it before config_version 2, and a checkpoint from before the subpackages
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(DATA / "run_v1_toy_ppo" / "config.yaml", run / "config.yaml")
    shutil.copy(DATA / "ckpt_v0_ppo.pt", run / "checkpoints" / "ckpt_000000001000.pt")
    assert main(["train", f"resume={run}", "train.total_steps=2500"]) == 0
    assert "curriculum.plr_beta -> curriculum.plr.beta" in "\n".join(_deprecations(capsys))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["config_version"] == 2 and saved["curriculum"]["plr"] == {"beta": 0.3, "rho": 0.1}
    assert any(p.name > "ckpt_000000001000.pt" for p in (run / "checkpoints").iterdir())


def test_grpo_says_which_ppo_keys_it_does_not_read(capsys):
    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", ["algo=grpo"])  # the toy config sets ppo.lr: 1.0e-3
    assert cfg.grpo.lr == 3e-4
    err = capsys.readouterr().err
    assert (
        "algo=grpo reads nothing from ppo.* (its surrogate and optimiser settings are grpo.*): ppo.lr=0.001 not used"
        in err
    )
