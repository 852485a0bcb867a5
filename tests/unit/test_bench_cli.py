"""`sweet-bench`: every subcommand's flags have help and show their defaults."""

from __future__ import annotations

import argparse
import importlib

import pytest

from sweet_megatron.bench.cli import SUBCOMMANDS


class _Parsed(Exception):
    pass


OVERRIDE_STYLE = {"plan": ("world_size", "gpu_gb", "mfu", "gpus_per_node")}
"""Subcommands that take sweet-train's key=value overrides (plus keys of their own) instead of flags."""


@pytest.mark.parametrize("name", sorted(OVERRIDE_STYLE))
def test_override_style_subcommands_document_their_keys(name, capsys):
    module, func, _ = SUBCOMMANDS[name]
    assert getattr(importlib.import_module(module), func)(["--help"]) == 0
    page = capsys.readouterr().out
    for key in OVERRIDE_STYLE[name]:
        assert f"\n  {key} " in page and "default" in page.split(f"\n  {key} ", 1)[1].split("\n", 1)[0], key


@pytest.mark.parametrize("name", sorted(set(SUBCOMMANDS) - set(OVERRIDE_STYLE)))
def test_every_flag_has_help_and_shows_its_default(name, monkeypatch, capsys):
    module, func, _ = SUBCOMMANDS[name]

    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed) as parsed:
        getattr(importlib.import_module(module), func)([])
    parser = parsed.value.args[0]
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"sweet-bench {name}: flags without help: {undocumented}"
    page = parser.format_help()
    for action in parser._actions:
        if action.default is not argparse.SUPPRESS and action.option_strings and action.dest != "help":
            assert f"(default: {action.default})" in " ".join(page.split()), (name, action.dest)
