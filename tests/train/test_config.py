"""PretrainConfig from TOML tables: the shipped model configs load, typos and wrong types are named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.config import UsageError
from train.config import PretrainConfig, config_from_dict, load_config_file
from train.pretrain import pretrain_config_from_tables

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_shipped_model_configs_load(name: str) -> None:
    cfg = load_config_file(str(CONFIGS / f"{name}.toml"))
    assert cfg.validate() is cfg
    data = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
    assert set(data) == {"model", "pretrain"}
    assert cfg.n_layer == data["model"]["n_layer"]


def test_defaults_are_the_tiny_demo_config() -> None:
    assert load_config_file(str(CONFIGS / "tiny.toml")) == PretrainConfig()


def test_tables_override_defaults_and_base() -> None:
    cfg = pretrain_config_from_tables({"n_layer": 2, "qk_norm": True}, {"lr": 3, "compile": False})
    assert (cfg.n_layer, cfg.qk_norm, cfg.lr, cfg.compile) == (2, True, 3.0, False)
    assert isinstance(cfg.lr, float)
    base = PretrainConfig(batch_size=7)
    assert config_from_dict({"max_steps": 9}, base).batch_size == 7  # flat keys work too


@pytest.mark.parametrize(
    "data, match",
    [
        ({"pretrain": {"max_step": 5}}, r"\[pretrain\] has unknown key\(s\) max_step;"),
        ({"model": {"lr": 1e-3}}, r"\[model\] has unknown key\(s\) lr;"),
        ({"model": {"vocab_size": 100}}, "manifest"),
        ({"optimizer": {}}, r"\[top level\] has unknown key\(s\) optimizer;"),
        ({"model": 3}, r"\[model\] must be a table"),
        ({"pretrain": {"max_steps": "10"}}, r"\[pretrain\] max_steps must be int, got str '10'"),
        ({"model": {"qk_norm": 1}}, r"\[model\] qk_norm must be bool"),
        ({"pretrain": {"batch_size": True}}, r"\[pretrain\] batch_size must be int"),
        ({"pretrain": {"lr_decay_steps": 1.5}}, "lr_decay_steps must be int"),
    ],
)
def test_unknown_keys_and_wrong_types_are_named(data: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        config_from_dict(data)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"n_embd": 30, "n_head": 4}, "multiple of n_head"),
        ({"max_steps": 0}, "max_steps"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_validate_names_the_problem(changes: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PretrainConfig(**changes).validate()


def test_bad_config_file_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such config file"):
        load_config_file(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_config_file(str(bad))


def test_data_is_one_folder_or_a_list_of_weighted_folders() -> None:
    assert config_from_dict({"pretrain": {"data": "runs/shards"}}).data == ("runs/shards",)
    cfg = config_from_dict({"pretrain": {"data": ["web:0.7", "s3://b/books:0.3"]}})
    assert cfg.validate().data == ("web:0.7", "s3://b/books:0.3")
    assert config_from_dict({"data": "flat"}).data == ("flat",)
    assert PretrainConfig().data == ()
    with pytest.raises(UsageError, match=r"\[pretrain\] data must be"):
        config_from_dict({"pretrain": {"data": 3}})
    with pytest.raises(UsageError, match="positive"):
        config_from_dict({"pretrain": {"data": ["web:0"]}}).validate()
