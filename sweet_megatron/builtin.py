"""Files shipped inside the package (sweet_megatron/assets/), named `builtin:<relative path>`.

`builtin:base-small` is the embedded default's base model, `builtin:colbench/backend_test_0-199.jsonl`
the shipped ColBench sample. They are found through the package, never the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BUILTIN = "builtin:"


def is_builtin(path: str | os.PathLike) -> bool:
    return str(path).startswith(BUILTIN)


def resolve_builtin(path: str | os.PathLike) -> Path:
    """`builtin:NAME` -> the shipped file or directory NAME under sweet_megatron/assets; any other
    path is returned as it is. A missing builtin name raises FileNotFoundError listing what ships."""
    text = str(path)
    if not is_builtin(text):
        return Path(text)
    name = text.removeprefix(BUILTIN)
    out = ASSETS_DIR / name
    if not name or not out.exists():
        raise FileNotFoundError(f"{text}: nothing of that name ships with sweet-megatron "
                                f"(shipped: {', '.join(shipped_names()) or 'none'})")
    return out


def shipped_names() -> list[str]:
    """`builtin:` names of the shipped checkpoints and data files."""
    if not ASSETS_DIR.is_dir():
        return []
    names = [BUILTIN + p.name for p in ASSETS_DIR.iterdir() if p.is_dir() and (p / "sweet_meta.json").is_file()]
    names += [BUILTIN + str(p.relative_to(ASSETS_DIR)) for p in ASSETS_DIR.rglob("*.jsonl")]
    return sorted(names)
