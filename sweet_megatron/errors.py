"""ConfigError and the one check of a value against its choices, shared by config.py and model.py
(a leaf module: config.py imports model.py, so model.py cannot import config.py)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value or key that cannot work; the message names the key and the fix."""


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ConfigError naming `key` and the valid choices unless `value` is one of them."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: use one of {', '.join(choices)}")
