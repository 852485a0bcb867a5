"""ColBench frontend task records and the agent's HTML answer.

Schema (released ColBench frontend split): `problem_description` (the kind of site and its parts, in
prose) and `ground_truth` (the reference page: HTML that links the Tailwind 2.2.19 stylesheet from
jsDelivr and uses its classes; images are `https://picsum.photos/...` URLs). Two optional fields
this project adds: `task_id` and `synthetic` (the hidden details of a synthetic page, see
synthetic.py). Other fields are ignored.

The agent's page is cut out of its text by `extract_html`: the `<html>...</html>` block, else the
`<body>...</body>` block, else the first fenced ```html block; None when there is no page.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sweet_megatron.builtin import resolve_builtin
from sweet_megatron.env.jsonl import iter_jsonl

REQUIRED_FIELDS = ("problem_description", "ground_truth")


class FrontendFormatError(ValueError):
    """A frontend record that does not follow the schema; the message names file, line and field."""


@dataclass
class FrontendTask:
    """One frontend design task."""

    problem_description: str
    """What the agent sees: the site and its parts in prose (no colours, texts or sizes)."""
    ground_truth: str
    """The reference page's HTML (never shown to the agent; the critic's training-time information)."""
    task_id: str = ""
    """'<file stem>:<line>' for loaded real records, 'fe-syn-...' for synthetic ones."""
    index: int = 0
    """Position in the list it was loaded or generated in."""
    synthetic: dict | None = None
    """The hidden details of a synthetic page (synthetic.PageSpec.to_dict()), else None."""

    @property
    def hidden_information(self) -> str:
        """What the simulated person answers from: the reference page itself."""
        return self.ground_truth

    def to_record(self) -> dict:
        rec = {"problem_description": self.problem_description, "ground_truth": self.ground_truth}
        if self.task_id:
            rec["task_id"] = self.task_id
        if self.synthetic is not None:
            rec["synthetic"] = self.synthetic
        return rec

    @classmethod
    def from_record(cls, rec: object, where: str = "<record>", index: int = 0) -> FrontendTask:
        """Validate one decoded JSON record; `where` ('file:line') prefixes every error."""
        if not isinstance(rec, dict):
            raise FrontendFormatError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
        for name in REQUIRED_FIELDS:
            if name not in rec:
                raise FrontendFormatError(f"{where}: missing field '{name}'; every frontend record needs "
                                          f"{list(REQUIRED_FIELDS)}")
            if not isinstance(rec[name], str):
                raise FrontendFormatError(f"{where}: field '{name}' must be a string, got {type(rec[name]).__name__}")
            if not rec[name].strip():
                raise FrontendFormatError(f"{where}: field '{name}' is empty")
        if extract_html(rec["ground_truth"]) is None:
            raise FrontendFormatError(f"{where}: field 'ground_truth' holds no <html> or <body> block; "
                                      "it must be the reference page's HTML")
        task_id = rec.get("task_id", "")
        if not isinstance(task_id, str):
            raise FrontendFormatError(f"{where}: field 'task_id' must be a string, got {type(task_id).__name__}")
        synthetic = rec.get("synthetic")
        if synthetic is not None and not isinstance(synthetic, dict):
            raise FrontendFormatError(f"{where}: field 'synthetic' must be an object (a synthetic page's "
                                      "hidden details) or absent")
        return cls(rec["problem_description"], rec["ground_truth"], task_id, index, synthetic)


def load_frontend_tasks(path: str | os.PathLike, limit: int | None = None) -> list[FrontendTask]:
    """Read a JSONL file of frontend records (blank lines skipped): a path, or
    `builtin:colbench/frontend_test_0-49.jsonl` for the shipped sample. Ids default to '<stem>:<line>'."""
    path = resolve_builtin(path)
    if not path.is_file():
        raise FileNotFoundError(f"frontend task file {path} not found")
    tasks: list[FrontendTask] = []
    for where, lineno, rec in iter_jsonl(path, FrontendFormatError):
        task = FrontendTask.from_record(rec, where, index=len(tasks))
        task.task_id = task.task_id or f"{path.stem}:{lineno}"
        tasks.append(task)
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def save_frontend_tasks(tasks: list[FrontendTask], path: str | os.PathLike) -> None:
    """Write tasks as JSONL (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps(task.to_record(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


_HTML_BLOCK = re.compile(r"<html\b.*?(?:</html\s*>|\Z)", re.S | re.I)
_BODY_BLOCK = re.compile(r"<body\b.*?(?:</body\s*>|\Z)", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*html[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_html(text: str | None) -> str | None:
    """The page in an agent's text: the first `<html>...</html>` block, else the first
    `<body>...</body>` block, else the first fenced ```html block; an unclosed block runs to the end
    of the text. None when the text holds no page."""
    if not text:
        return None
    for pattern in (_HTML_BLOCK, _BODY_BLOCK):
        m = pattern.search(text)
        if m:
            return m.group(0).strip()
    m = _FENCE.search(text)
    if m and m.group(1).strip():
        return m.group(1).strip()
    return None


def is_frontend_file(path: str | os.PathLike) -> bool:
    """Whether a task file holds frontend records, read from its first record: a frontend record has
    no `test_cases` and its `ground_truth` is a page (an <html> or <body> block); a backend record
    carries `test_cases` and code. Unreadable first lines count as not frontend (the backend loader
    then names the problem)."""
    path = resolve_builtin(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} not found")
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return (isinstance(rec, dict) and "test_cases" not in rec
                        and isinstance(rec.get("ground_truth"), str) and extract_html(rec["ground_truth"]) is not None)
    return False
