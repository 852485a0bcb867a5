"""`sweet-bench`: every subcommand's flags have help and show their defaults."""

from __future__ import annotations

import argparse
import importlib

import pytest

from sweet_megatron.bench.cli import SUBCOMMANDS


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
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
