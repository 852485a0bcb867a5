"""One source of defaults: `sweet-train` with no overrides (the YAML tree) and the dataclasses'
defaults (what `RunConfig()` in Python gives) are the same run."""

import dataclasses

from sweet_megatron.config import load_config


def _differences(a, b, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va):
            out += _differences(va, vb, f"{prefix}{f.name}.")
        elif va != vb:
            out.append(f"{prefix}{f.name}: YAML {va!r}, dataclass {vb!r}")
    return out


def test_yaml_defaults_equal_the_dataclass_defaults():
    cfg = load_config([])
    # model= and parallel= pick named variants (sizes, layouts); every other group has one default
    groups = [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))
              and f.name not in ("model", "parallel")]
    assert {"train", "sweet", "task", "rollout", "simulator", "tokenizer"} <= set(groups)
    diffs = [d for g in groups for d in _differences(getattr(cfg, g), type(getattr(cfg, g))(), f"{g}.")]
    assert not diffs, "set the dataclass default to the YAML value (or the YAML to the dataclass'): " + "; ".join(diffs)


def test_every_trained_model_has_its_own_optimizer_config():
    import pytest

    from sweet_megatron.config import ConfigError

    cfg = load_config(["sweet.critic_optim.lr=1e-3"])
    optims = {"train": cfg.train.optim, "critic": cfg.sweet.critic_optim, "actor": cfg.sweet.actor_optim,
              "rft": cfg.sweet.rft_optim, "mtdpo": cfg.sweet.mtdpo_optim, "pretrain": cfg.pretrain.optim}
    assert cfg.sweet.critic_optim.lr == 1e-3 and all(o.lr != 1e-3 for k, o in optims.items() if k != "critic")
    for old, new in (("sweet.critic_lr", "sweet.critic_optim.lr"), ("sweet.actor_lr", "sweet.actor_optim.lr")):
        with pytest.raises(ConfigError, match=new.replace(".", r"\.")):
            load_config([f"{old}=1e-4"])
