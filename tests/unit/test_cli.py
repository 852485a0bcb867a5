"""The command line a user meets: a closed config tree, our own help page, errors as one line (exit 2).

Through the config loader in process, and through the real `sweet-train` in subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from sweet_megatron.cli.help import COMMON_KEYS, STAGE_HELP, key_doc
from sweet_megatron.cli.train import main, parse_argv
from sweet_megatron.config import STAGES, ConfigError, RunConfig, check_closed, load_config


def _sweet_train(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.parametrize("override, suggestion", [
    ("+parallel.tensor_paralel=2", "parallel.tensor_parallel"),
    ("++parallel.tensor_paralel=2", "parallel.tensor_parallel"),
    ("parallel.tensor_paralel=2", "parallel.tensor_parallel"),
    ("+train.optim.lrr=1e-3", "train.optim.lr"),
    ("+model.fp8.enabledd=true", "model.fp8.enabled"),
    ("~train.stepz", "train.steps"),
    ("+sweet.critic_step=3", "sweet.critic_steps"),
])
def test_unknown_keys_however_spelled_name_the_closest_key(override, suggestion):
    with pytest.raises(ConfigError, match=f"unknown key `.*`: did you mean `{suggestion}`"):
        load_config([override])


def test_unknown_top_level_key_and_group_option():
    with pytest.raises(ConfigError, match="unknown key `foo`.*valid keys: model, parallel"):
        load_config(["+foo=1"])
    with pytest.raises(ConfigError, match="parallel=tp3: no such parallel config; did you mean `parallel=tp2`"):
        load_config(["parallel=tp3"])
    with pytest.raises(ConfigError, match="`train.steps` is a value"):
        load_config(["+train.steps.x=1"])


def test_known_keys_still_compose():
    cfg = load_config(["parallel.tensor_parallel=2", "model.fp8.enabled=true", "train.optim.lr=1e-3", "model=tiny"])
    assert cfg.parallel.tensor_parallel == 2 and cfg.model.fp8.enabled and cfg.train.optim.lr == 1e-3
    assert cfg.model.hidden_size == 128


def test_a_yaml_file_with_an_unknown_key_is_refused():
    cfg = OmegaConf.create({"train": {"steps": 3, "optim": {"lr": 1.0, "warmup_step": 2}}, "seed": 1})
    with pytest.raises(ConfigError, match="`train.optim.warmup_step`: did you mean `train.optim.warmup_steps`"):
        check_closed(cfg)
    check_closed(OmegaConf.create({"train": {"steps": 3}, "hydra": {"anything": 1}}))


def test_the_main_job_is_the_default():
    assert load_config().stage == "all" and RunConfig().stage == "all"


def test_help_is_ours_and_generated(capsys):
    assert set(STAGE_HELP) == set(STAGES)
    assert all(key_doc(k) for k in COMMON_KEYS), [k for k in COMMON_KEYS if not key_doc(k)]
    assert len(COMMON_KEYS) == 10
    assert main(["--help"]) == 0
    page = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage} " in page
    defaults = load_config()
    for key in COMMON_KEYS:
        value = OmegaConf.select(OmegaConf.structured(defaults), key)
        assert f"{key}={'null' if value is None else value}" in page
    for group in ("model", "parallel", "rollout", "simulator", "sweet", "task", "train"):
        assert f"  {group} " in page
    assert "[small]" in page and "[single]" in page  # the default options, from config.yaml
    with pytest.raises(ConfigError, match="unknown flag --nope"):
        parse_argv(["--nope"])


def test_cfg_job_prints_the_resolved_config(capsys):
    assert main(["--cfg", "job", "train.steps=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 7 and printed["stage"] == "all" and "hydra" not in printed


def test_sweet_train_refuses_an_added_misspelled_key(tmp_path):
    out = _sweet_train("+parallel.tensor_paralel=2", f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 2, out.stderr
    assert "did you mean `parallel.tensor_parallel`?" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_sweet_train_missing_checkpoint_is_one_line(tmp_path):
    out = _sweet_train("train.init_from=/nope", f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 2, out.stderr
    assert "train.init_from=/nope: /nope does not exist" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a sweet-megatron model checkpoint"):
        main(["train.init_from=" + str(tmp_path / "empty"), f"run_dir={tmp_path / 'run'}", "--debug"])


def test_refused_layout_lands_in_an_existing_train_log(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["parallel=tp2", f"run_dir={run}"]) == 2  # world size 1
    assert not run.exists()
    run.mkdir()
    (run / "train.log").write_text("earlier run\n")
    assert main(["parallel=tp2", f"run_dir={run}"]) == 2
    err = capsys.readouterr().err
    assert "world size 1 is not divisible" in err
    assert "world size 1 is not divisible" in (run / "train.log").read_text().splitlines()[-1]


def test_an_error_after_the_run_starts_lands_in_train_log(tmp_path):
    """model=tiny against the shipped base model (model=small): refused after logging began."""
    run = tmp_path / "run"
    out = _sweet_train("model=tiny", "stage=sft", f"run_dir={run}", "train.progress=false")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "ERROR sweet_megatron: sweet-train: error: train.init_from=builtin:base-small holds another model" in \
        (run / "train.log").read_text()
