"""ColBench backend task records: the dataclass, a JSONL loader that names file, line and field
of a malformed record, and a writer.

Schema (released ColBench backend split): `problem_description` (ends with "The signature of the
function is: def name(args)"), `ground_truth` (the reference function), `hidden_information`
(what the simulated person may use to answer; the reference code in every released record),
`test_cases` ({"test1": "name(...)", ...}, call expressions evaluated against both the answer and
the reference). Two optional fields this project adds: `task_id` and `synthetic` (the structured
hidden details of a synthetic task: an object here, checked by the synthetic family's
`read_synthetic_tasks`, env/synthetic/family.py). Other fields are ignored.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sweet_megatron.builtin import resolve_builtin
from sweet_megatron.env.jsonl import iter_jsonl

SIGNATURE_MARK = "The signature of the function is:"
_SIGNATURE = re.compile(re.escape(SIGNATURE_MARK) + r"\s*(def\s+([A-Za-z_]\w*)\s*\(.*)", re.S)
REQUIRED_FIELDS = ("problem_description", "ground_truth", "hidden_information", "test_cases")


class TaskFormatError(ValueError):
    """A task record that does not follow the schema; the message names file, line and field."""


@dataclass
class Task:
    """One backend programming task."""

    problem_description: str
    """What the agent sees; ends with the function signature."""
    ground_truth: str
    """The reference function (never shown to the agent)."""
    hidden_information: str
    """What the simulated person answers from."""
    test_cases: dict[str, str]
    """Test name -> call expression."""
    task_id: str = ""
    """Stable id: '<file stem>:<line>' for loaded real records, 'syn-...' for synthetic ones."""
    index: int = 0
    """Position in the list it was loaded or generated in."""
    synthetic: dict | None = None
    """Structured hidden details of a synthetic task (synthetic.family.SyntheticSpec.to_dict()), else None."""

    @property
    def signature(self) -> str:
        """'def name(args)' as given at the end of the description."""
        m = _SIGNATURE.search(self.problem_description)
        return m.group(1).strip() if m else ""

    @property
    def function_name(self) -> str:
        m = _SIGNATURE.search(self.problem_description)
        return m.group(2) if m else ""

    def to_record(self) -> dict:
        """The JSON object written to a JSONL line."""
        rec = {
            "problem_description": self.problem_description,
            "ground_truth": self.ground_truth,
            "hidden_information": self.hidden_information,
            "test_cases": dict(self.test_cases),
        }
        if self.task_id:
            rec["task_id"] = self.task_id
        if self.synthetic is not None:
            rec["synthetic"] = self.synthetic
        return rec

    @classmethod
    def from_record(cls, rec: object, where: str = "<record>", index: int = 0) -> Task:
        """Validate one decoded JSON record; `where` ('file:line') prefixes every error."""
        if not isinstance(rec, dict):
            raise TaskFormatError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
        for name in REQUIRED_FIELDS:
            if name not in rec:
                raise TaskFormatError(f"{where}: missing field '{name}'; every record needs {list(REQUIRED_FIELDS)}")
        for name in ("problem_description", "ground_truth", "hidden_information"):
            if not isinstance(rec[name], str):
                raise TaskFormatError(f"{where}: field '{name}' must be a string, got {type(rec[name]).__name__}")
        for name in ("problem_description", "ground_truth"):
            if not rec[name].strip():
                raise TaskFormatError(f"{where}: field '{name}' is empty")
        if not _SIGNATURE.search(rec["problem_description"]):
            raise TaskFormatError(
                f"{where}: field 'problem_description' must end with '{SIGNATURE_MARK} def name(args)'")
        tests = rec["test_cases"]
        if not isinstance(tests, dict) or not tests:
            raise TaskFormatError(
                f"{where}: field 'test_cases' must be a non-empty object of test name -> call expression, "
                f"got {type(tests).__name__}")
        for name, expr in tests.items():
            if not isinstance(expr, str) or not expr.strip():
                raise TaskFormatError(f"{where}: field 'test_cases.{name}' must be a non-empty string (a call expression)")
        task_id = rec.get("task_id", "")
        if not isinstance(task_id, str):
            raise TaskFormatError(f"{where}: field 'task_id' must be a string")
        synthetic = rec.get("synthetic")
        if synthetic is not None and not isinstance(synthetic, dict):
            raise TaskFormatError(f"{where}: field 'synthetic' must be an object (the synthetic family's hidden "
                                  f"details), got {type(synthetic).__name__}; regenerate the task with "
                                  "`sweet-colbench generate`")
        return cls(rec["problem_description"], rec["ground_truth"], rec["hidden_information"],
                   dict(tests), task_id, index, synthetic)


def load_tasks(path: str | os.PathLike, limit: int | None = None,
               check: Callable[[Task, str], None] | None = None) -> list[Task]:
    """Read a JSONL file of task records (blank lines skipped): a path, or `builtin:colbench/...` for
    the shipped ColBench sample. Task ids default to '<stem>:<line>'. `check(task, 'file:line')`,
    when given, may reject a record with TaskFormatError (e.g. synthetic.family.check_record)."""
    path = resolve_builtin(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} not found")
    tasks: list[Task] = []
    for where, lineno, rec in iter_jsonl(path, TaskFormatError):
        task = Task.from_record(rec, where, index=len(tasks))
        if check is not None:
            check(task, where)
        task.task_id = task.task_id or f"{path.stem}:{lineno}"
        tasks.append(task)
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


@dataclass
class TaskFile:
    """The usable tasks of a JSONL file and what was wrong with the others."""

    path: Path
    """The resolved file."""
    tasks: list[Task]
    problems: list[str]
    """One 'file:line: what is wrong' message per row that could not be used."""

    def summary(self, key: str) -> str:
        """A one-line report: how many rows were used, how many skipped and the first few reasons."""
        text = f"{key}={self.path}: {len(self.tasks)} tasks"
        if self.problems:
            shown = "; ".join(self.problems[:3]) + ("; ..." if len(self.problems) > 3 else "")
            text += f", {len(self.problems)} unusable rows skipped ({shown})"
        return text


def read_task_file(path: str | os.PathLike, limit: int | None = None, key: str = "task file") -> TaskFile:
    """Like load_tasks, but a row that is not JSON or not a valid task is recorded in `problems` and
    skipped instead of raising (a released file with a few bad rows stays usable). Raises
    FileNotFoundError naming `key` when the file is missing, TaskFormatError when no row is usable."""
    resolved = resolve_builtin(path).expanduser().resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"{key}={path}: no such file ({resolved}); give the path of a JSONL file of tasks "
                                "in the ColBench backend schema")
    tasks: list[Task] = []
    problems: list[str] = []
    with resolved.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and len(tasks) >= limit:
                break
            if not line.strip():
                continue
            where = f"{resolved}:{lineno}"
            try:
                task = Task.from_record(json.loads(line), where, index=len(tasks))
            except json.JSONDecodeError as e:
                problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            except TaskFormatError as e:
                problems.append(str(e))
                continue
            task.task_id = task.task_id or f"{resolved.stem}:{lineno}"
            tasks.append(task)
    if not tasks:
        detail = f" ({problems[0]})" if problems else " (the file is empty)"
        raise TaskFormatError(f"{key}={path}: no usable task in {resolved}{detail}")
    return TaskFile(resolved, tasks, problems)


def save_tasks(tasks: list[Task], path: str | os.PathLike) -> None:
    """Write tasks as JSONL (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps(task.to_record(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(answer: str) -> str:
    """The code of an answer: the first fenced block if there is one (a python one first), else the
    text itself; dedented and stripped."""
    blocks = _FENCE.findall(answer)
    if blocks:
        python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
        answer = python[0] if python else blocks[0][1]
    return textwrap.dedent(answer).strip()


def ordered_tests(task: Task) -> list[tuple[str, str]]:
    """(name, expression) of the task's tests, test1..testN in numeric order."""
    def key(name: str) -> tuple[int, str]:
        digits = re.sub(r"\D", "", name)
        return (int(digits) if digits else 0, name)

    return [(name, task.test_cases[name]) for name in sorted(task.test_cases, key=key)]
