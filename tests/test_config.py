"""Config loading, overrides and strict validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtrl.config import Config, load_config, save_config
from mtrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads_names_registered_plugins_and_round_trips(tmp_path):
    """Every config under configs/ (subfolders too) loads, names a registered algorithm, suite and
    architecture, differs from the defaults, and reads back equal from its saved form."""
    from mtrl.registry import ALGOS, ARCHS, SUITES

    configs = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(configs) >= 30
    for path in configs:
        cfg = load_config(path)
        assert cfg.algo in ALGOS.names() and cfg.policy.arch in ARCHS.names(), path
        assert cfg.env.suite in SUITES.names() or cfg.env.suite.startswith("metaworld-mt1-"), path
        assert cfg != Config(), path
        save_config(cfg, tmp_path / "saved.yaml")
        assert load_config(tmp_path / "saved.yaml") == cfg, path


def test_overrides_apply_and_parse_types():
    cfg = load_config(
        ROOT / "configs/toy_mtppo.yaml",
        [
            "seed=7",
            "train.total_steps=123",
            "rollout.workers=3",
            "ppo.lr=1e-3",
            "ppo.task_norm=false",
            "run_dir=2024",
            "ray.address=auto",
        ],
    )
    assert (cfg.seed, cfg.train.total_steps, cfg.rollout.workers) == (7, 123, 3)
    assert cfg.ppo.lr == pytest.approx(1e-3) and cfg.ppo.task_norm is False
    assert cfg.run_dir == "2024" and cfg.ray.address == "auto"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("rollout.wokers=1", "unknown config key 'rollout.wokers' (did you mean 'workers'?)"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("rollout.workers=two", "rollout.workers: expected an integer, got 'two'"),
        ("seed=1.5", "seed: expected an integer"),
        ("ppo.task_norm=1", "ppo.task_norm: expected true/false"),
        ("ppo.gamma=1.5", "ppo.gamma: must be <= 1.0"),
        ("ppo.lr=0", "ppo.lr: must be > 0.0"),
        ("ppo.lr=.nan", "ppo.lr: expected a finite number"),
        ("rollout.workers=-1", "rollout.workers: must be >= 0"),
        ("policy.arch=transformer", "policy.arch: unknown architecture 'transformer'"),
        ("env=3", "env: expected a mapping"),
        ("novalue", "bad override 'novalue'"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/toy_mtppo.yaml", [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "config file is empty"),
        ("seed: [1, 2\n", "invalid YAML"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping of keys at the top level"),
    ],
)
def test_bad_files(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("configs/does_not_exist.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/minigrid_mt3_mtppo.yaml", ["seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["seed"] == 3


def test_arch_options_live_in_their_section_and_the_old_keys_still_work(tmp_path):
    from mtrl.config import save_config, to_dict

    new = load_config(ROOT / "configs/toy_mtppo.yaml", ["policy.arch=moore", "policy.moore.num_experts=3"])
    old = load_config(
        ROOT / "configs/toy_mtppo.yaml",
        ["config_version=1", "policy.arch=moore", "policy.num_experts=3", "policy.head=multi"],
    )
    assert new == old and new.policy.options["moore"].num_experts == 3
    assert to_dict(new)["policy"]["moore"] == {"num_experts": 3, "head": "multi"}
    save_config(new, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == new
    # a run directory's config.yaml from before the sections (num_experts and head at policy level)
    (tmp_path / "old.yaml").write_text("policy:\n  arch: moe\n  num_experts: 2\n  head: single\n")
    assert vars(load_config(tmp_path / "old.yaml").policy.options["moe"]) == {"num_experts": 2, "head": "single"}
    for overrides, message in (
        (
            ["config_version=1", "policy.arch=moore", "policy.num_experts=3", "policy.moore.num_experts=2"],
            "policy.num_experts=3 (the key before config_version 2) and policy.moore.num_experts=2 disagree",
        ),
        (["policy.arch=moore", "policy.moore.num_experts=0"], "policy.moore.num_experts: must be >= 1, got 0"),
        (["policy.arch=moore", "policy.moore.experts=2"], "unknown config key 'policy.moore.experts'"),
        (["policy.mlp.width=2"], "policy.mlp: architecture 'mlp' has no options of its own"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(ROOT / "configs/toy_mtppo.yaml", overrides)
