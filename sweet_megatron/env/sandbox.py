"""Run untrusted Python code on test calls in a sandbox, from the host side.

One sandbox process per (code, list of test expressions): `sandbox_worker.py` runs inside it and
forks one confined child per test (see that file for what a child may do). Two backends:

- "bwrap" (preferred): bubblewrap gives the worker new PID, network, IPC and UTS namespaces, a
  read-only view of only /usr, the interpreter's prefix and the configured extra Python paths, a
  minimal /dev, no /proc, and a size-capped tmpfs scratch directory. Run as root, the worker keeps
  only CAP_SETUID/SETGID/KILL so that each test child can drop to a fresh unprivileged uid (which
  makes RLIMIT_NPROC count only that test's processes); after each test the worker kills every
  other process of the namespace. About 10 ms per start.
- "process" (an explicit opt-in, never chosen for you: `backend="process"`, `sweet-colbench
  --backend process`, or SWEET_SANDBOX_BACKEND=process for sweet-train; warned about on every
  summary): the same worker as a plain subprocess in its own
  session with a private temporary directory; rlimits, the uid drop (as root) and the audit
  hooks still apply, but there are no namespaces, so file and network isolation rest on those
  hooks. Known gaps there: calls that raise no audit event (os.mkfifo, os.mknod) can still create
  entries in world-writable directories, and a test's stray processes are found by uid or
  process group rather than by namespace.

Simplifications on purpose: the interpreter in the sandbox is the host's own (`sys.base_prefix`,
started without site-packages); the only third-party code it can import is what
`SandboxConfig.python_paths` names (by default the site-packages directory that holds numpy, so
that answers and references using numpy run as they would in ColBench).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import marshal
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

WORKER_FILE = Path(__file__).with_name("sandbox_worker.py")
SCRATCH = "/scratch"  # the scratch directory's path inside a bwrap sandbox
UID_RANGE = (1_000_000, 2_000_000_000)  # test children run as base + test index, base drawn here
BACKEND_ENV = "SWEET_SANDBOX_BACKEND"
STATUSES = ("ok", "error", "timeout", "crash", "too_large", "sandbox_error")


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation for running untrusted code."""

    backend: str = field(default_factory=lambda: os.environ.get(BACKEND_ENV, "auto"))
    """'bwrap' (bubblewrap), 'process' (no namespaces: an explicit opt-in to unisolated scoring) or
    'auto' (bwrap; when it is not usable here, scoring refuses with the install command). The
    default comes from $SWEET_SANDBOX_BACKEND, else 'auto'."""
    test_timeout_s: float = 2.0
    """Wall-clock limit of one test call (including exec of the module code)."""
    total_timeout_s: float = 12.0
    """Wall-clock budget of one sandbox (all its tests); tests left when it is spent time out."""
    cpu_time_s: int = 2
    """RLIMIT_CPU of one test child, whole seconds (SIGXCPU then SIGKILL one second later)."""
    memory_mb: int = 512
    """RLIMIT_AS of one test child."""
    file_size_mb: int = 1
    """RLIMIT_FSIZE: the largest file a test may write (in its scratch directory)."""
    max_processes: int = 8
    """RLIMIT_NPROC of a test child (threads count), for its private uid."""
    scratch_mb: int = 32
    """Size of the scratch tmpfs (bwrap backend)."""
    max_result_bytes: int = 1 << 20
    """Largest encoded return value of one test; larger results fail the test."""
    python_paths: tuple[str, ...] | None = None
    """Extra read-only import paths in the sandbox; None = the site-packages holding numpy, if any."""
    env: dict[str, str] = field(
        default_factory=lambda: {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            # Set iteration order (hence str(set), ", ".join(set)) must be the same for the
            # reference and the answer, which run in different processes.
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    """The whole environment of the sandboxed interpreter."""

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "bwrap", "process"):
            raise ValueError(f"SandboxConfig.backend={self.backend!r}: use 'auto', 'bwrap' or 'process'")
        for name in ("test_timeout_s", "total_timeout_s", "cpu_time_s", "memory_mb", "file_size_mb",
                     "max_processes", "scratch_mb", "max_result_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name}={getattr(self, name)}: set it above 0")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxConfig.memory_mb={self.memory_mb}: Python needs at least 64")


@dataclass
class TestRun:
    """What one test call did in the sandbox."""

    status: str
    """'ok' (returned), 'error' (raised), 'timeout', 'crash' (died), 'too_large' (result over the
    cap) or 'sandbox_error' (the sandbox itself failed; see error)."""
    value_json: str | None = None
    """The return value as the worker's tagged JSON (only when status == 'ok'); decode it with
    evaluator.decode_value, never with pickle or eval."""
    error: str | None = None


@functools.cache
def _worker_source() -> str:
    return WORKER_FILE.read_text()


def _default_python_paths() -> tuple[str, ...]:
    spec = importlib.util.find_spec("numpy")
    if spec is None or not spec.submodule_search_locations:
        return ()
    return (str(Path(next(iter(spec.submodule_search_locations))).resolve().parent),)


def _python() -> tuple[str, str]:
    """(real path of this interpreter, real path of its base prefix)."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def _is_root() -> bool:
    return os.geteuid() == 0


def _bwrap_argv(config: SandboxConfig, python_paths: tuple[str, ...]) -> list[str]:
    exe, prefix = _python()
    argv = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(name):
            argv += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            argv += ["--ro-bind", name, name]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--ro-bind-try", "/etc/localtime", "/etc/localtime"]
    made: set[str] = set()
    for root in (prefix, *python_paths):
        if root == "/usr" or root.startswith("/usr/"):
            continue
        # Directories bwrap creates on its own are not traversable by the test's uid.
        for parent in reversed(Path(root).parents):
            p = str(parent)
            if p != "/" and p not in made:
                made.add(p)
                argv += ["--perms", "0755", "--dir", p]
        argv += ["--ro-bind", root, root]
    argv += ["--dev", "/dev",
             "--perms", "1777", "--size", str(config.scratch_mb << 20), "--tmpfs", SCRATCH,
             "--chdir", SCRATCH,
             "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--clearenv"]
    if _is_root():
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
    for key, value in config.env.items():
        argv += ["--setenv", key, value]
    return [*argv, exe, "-P", "-s", "-S", "-c", _worker_source()]


def _prefix_world_traversable(prefix: str) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [prefix, *map(str, Path(prefix).parents)])


def _user_task_count(uid: int) -> int:
    """Processes and threads of `uid` on this host (what RLIMIT_NPROC counts)."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1"))
    return count


def _run(config: SandboxConfig, backend: str, code: str, tests: list[str]) -> tuple[list[TestRun], str]:
    python_paths = config.python_paths if config.python_paths is not None else _default_python_paths()
    exe, prefix = _python()
    root = _is_root()
    drop_uid = random.randrange(*UID_RANGE) if root else None
    processes = config.max_processes
    if not root:
        # Without a private uid RLIMIT_NPROC counts all of this user's tasks on the host.
        processes += _user_task_count(os.getuid())
    tmp = None
    if backend == "bwrap":
        argv, cwd, scratch = _bwrap_argv(config, python_paths), None, SCRATCH
    else:
        tmp = tempfile.mkdtemp(prefix="sweet-sandbox-")
        os.chmod(tmp, 0o1777)
        if root and not _prefix_world_traversable(prefix):
            drop_uid = None  # the dropped uid could not import the standard library
            processes += _user_task_count(0)
        argv, cwd, scratch = [exe, "-P", "-s", "-S", "-c", _worker_source()], tmp, tmp
    job = {
        "code": code,
        "tests": list(tests),
        "scratch": scratch,
        "drop_uid": drop_uid,
        "pid_namespace": backend == "bwrap",
        "python_paths": list(python_paths),
        "limits": {
            "cpu_time_s": config.cpu_time_s,
            "memory_bytes": config.memory_mb << 20,
            "file_bytes": config.file_size_mb << 20,
            "processes": processes,
            "result_bytes": config.max_result_bytes,
            "test_timeout_s": config.test_timeout_s,
            "total_timeout_s": config.total_timeout_s,
        },
    }
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=cwd, env=dict(config.env), start_new_session=True,
    )
    try:
        out, err = proc.communicate(marshal.dumps(job), timeout=config.total_timeout_s + 10)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        out, err = proc.communicate()
    finally:
        _killpg(proc.pid)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    runs: dict[int, TestRun] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
            i = int(rec["i"])
        except (ValueError, KeyError, TypeError):
            continue
        if 0 <= i < len(tests) and rec.get("status") in STATUSES:
            runs[i] = TestRun(rec["status"], rec.get("value"), rec.get("error"))
    stderr = err.decode("utf-8", "replace").strip()[-500:]
    missing = TestRun("sandbox_error", None, f"no result from the sandbox (rc={proc.returncode}): {stderr}")
    return [runs.get(i, missing) for i in range(len(tests))], stderr


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_BWRAP_PROBES: dict[str, str | None] = {}


def _bwrap_problem(config: SandboxConfig) -> str | None:
    """None when bubblewrap runs a test here, else why not (probed once per configuration)."""
    key = repr(config)
    if key not in _BWRAP_PROBES:
        _BWRAP_PROBES[key] = _probe_bwrap(config)
    return _BWRAP_PROBES[key]


def _probe_bwrap(config: SandboxConfig) -> str | None:
    if shutil.which("bwrap") is None:
        return "the bwrap executable is not on PATH"
    try:
        runs, stderr = _run(config, "bwrap", "x = 41", ["x + 1"])
    except OSError as e:
        return f"bwrap failed to start: {e}"
    if runs[0].status != "ok" or runs[0].value_json != "42":
        return f"bwrap could not run a test: {runs[0].error or stderr}"
    return None


class SandboxUnavailable(RuntimeError):
    """No isolating backend here, and no opt-in to unisolated scoring; the message says what to do."""


INSTALL_HINT = ("install bubblewrap (as root: apt-get install -y bubblewrap, or `bash setup.sh`; a non-root user "
                "also needs unprivileged user namespaces, sysctl kernel.unprivileged_userns_clone=1), or opt in "
                "to unisolated scoring (answers run as plain subprocesses with rlimits and audit hooks only): "
                f"sweet-colbench --backend process, {BACKEND_ENV}=process for sweet-train, "
                "or SandboxConfig(backend='process')")


def sandbox_backend(config: SandboxConfig) -> str:
    """The backend `config` resolves to here: 'bwrap', or 'process' when explicitly asked for.

    Raises SandboxUnavailable when bubblewrap is not usable and 'process' was not asked for."""
    if config.backend == "process":
        _warn_unisolated()
        return "process"
    problem = _bwrap_problem(config)
    if problem is None:
        return "bwrap"
    raise SandboxUnavailable(f"refusing to run untrusted answer code: bubblewrap is not usable here ({problem}); "
                             + INSTALL_HINT)


@functools.cache
def _warn_unisolated() -> None:
    msg = ("!!! UNISOLATED SCORING (sandbox backend 'process', opted in): untrusted code runs as plain "
           "subprocesses with rlimits and audit hooks but WITHOUT PID/network/mount namespaces. "
           "Install bubblewrap for real isolation. !!!")
    logger.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def run_tests(code: str, tests: list[str], config: SandboxConfig | None = None) -> list[TestRun]:
    """Exec `code` and eval each test expression in its namespace, each test in a fresh confined
    process; returns one TestRun per test, in order."""
    config = config or SandboxConfig()
    if not tests:
        return []
    return _run(config, sandbox_backend(config), code, tests)[0]
