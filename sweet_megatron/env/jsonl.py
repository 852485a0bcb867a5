"""JSONL records with their place in the file, for every environment's loaders (imports nothing of the project)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def iter_jsonl(path: str | os.PathLike, error: type[ValueError]):
    """(where, lineno, record) for each non-blank line of a JSONL file; `where` is 'file:line'.

    A line that is not JSON raises `error` (the caller's format error) naming file, line and column.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            yield where, lineno, rec
