"""Run untrusted Python code on test calls in a sandbox, from the host side.

One sandbox process per (code, list of test expressions): `sandbox_worker.py` runs inside it and
forks one confined child per test, one test at a time (see that file for what a child may do).
Two backends:

- "bwrap" (preferred): bubblewrap gives the worker new PID, network, IPC and UTS namespaces, a
  read-only view of only /usr, the interpreter's prefix and the configured extra Python paths, a
  minimal /dev, no /proc, and a size-capped tmpfs scratch directory. Run as root, the worker keeps
  only CAP_SETUID/SETGID/KILL so that each test child can drop to a fresh unprivileged uid (which
  makes RLIMIT_NPROC count only that test's processes); after each test the worker kills every
  other process of the namespace. About 10 ms per start.
- "process" (an explicit opt-in, never chosen for you: `backend="process"`, `sweet-colbench
  --backend process`, or SWEET_SANDBOX_BACKEND=process for sweet-train; warned about on every
  summary): the same worker as a plain subprocess in its own
  session with a private temporary directory; rlimits, the uid drop (as root), the seccomp filter,
  the cgroups and the audit hooks still apply, but there are no namespaces, so file and network
  isolation rest on those hooks. Known gaps there: calls that raise no audit event (os.mkfifo,
  os.mknod) can still create entries in world-writable directories, and a test's stray processes
  are found by uid or process group rather than by namespace (the cgroup kill catches the rest).

Limits (SandboxConfig fields in brackets), by where they are enforced:

- Per test process, rlimits set by the worker: CPU time [cpu_time_s] (SIGXCPU, then SIGKILL),
  address space [memory_mb], largest file written [file_size_mb], open files (64), no core
  dumps, processes and threads of the test's uid [max_processes]. A test may not raise them.
- Per test, wall time [test_timeout_s]: the worker kills the test's child and every process the
  test left (the whole PID namespace under bwrap) at the deadline; per sandbox [total_timeout_s];
  the result's size [max_result_bytes]; scratch space, a tmpfs [scratch_mb] (bwrap).
- Per sandbox, cgroups (`cgroup_hierarchies`): each sandbox runs in a cgroup of its own with
  memory.max [tree_memory_mb] (swap included where the kernel accounts it) and pids.max
  [max_processes + 4] over the whole tree, worker, test processes and scratch files (tmpfs pages
  are charged) included; tests run one at a time, so that is the running test's tree limit. The
  kernel's OOM killer ends the process that holds the most (the test reports 'timeout', killed by
  signal 9). After the run the host kills whatever is left in the cgroup and removes it. cgroup v2
  is used where the memory (and pids) controllers are enabled in this process's own cgroup's
  cgroup.subtree_control or can be (v2 lets a cgroup enable them only while no process lives in
  it, so this needs the root cgroup or a delegated one, e.g. a systemd unit with Delegate=yes; this
  process is never moved), else the v1 memory and pids hierarchies (a hybrid layout); where
  neither works (no write access, controllers not delegated), the reason is logged once at
  WARNING and a test's tree is bounded only by the rlimits above: up to memory_mb x max_processes.
  Measured where this was written (root in a container, kernel 6.18, hybrid layout): cgroup2 at
  /sys/fs/cgroup/unified with only hugetlb, memory and pids on v1, children creatable, limits
  settable, processes movable; so v1 is used there.
- System calls, a seccomp filter (`seccomp_program`, libseccomp through pyseccomp): the calls in
  DENIED_SYSCALLS (new namespaces with unshare/setns, io_uring, bpf, keyctl/add_key/request_key,
  ptrace, process_vm_readv/writev, mount and the new mount API, pivot_root, kexec, module loading,
  perf_event_open, userfaultfd, and a few more) fail with EPERM, clone with any CLONE_NEW* flag
  with EPERM, clone3 with ENOSYS (the C library then uses clone); other ABIs (i386, x32) kill the
  process. bwrap installs it (--seccomp); the process backend's worker installs it itself.
  Without libseccomp the reason is logged once and the sandbox runs without the filter.
- With the whole evaluator, memory is bounded by concurrency x tree_memory_mb (plus the host
  process): 2 x 2 CPU cores x 768 MB = 3 GB by default on a 2-core machine.

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
import time
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
    """RLIMIT_NPROC of a test child (threads count), for its private uid; with cgroups also the
    sandbox's pids.max (plus the few processes of bwrap and the worker)."""
    tree_memory_mb: int = 768
    """memory.max of the sandbox's cgroup (swap included): the worker, the running test's whole
    process tree and its scratch files together. Unused where cgroups are not usable here."""
    scratch_mb: int = 32
    """Size of the scratch tmpfs (bwrap backend)."""
    max_result_bytes: int = 1 << 20
    """Largest encoded return value of one test; larger results fail the test."""
    audit_hook: bool = True
    """Install the worker's audit hook in each test child (file, process, socket and ctypes guards).
    False leaves only the OS-level limits (namespaces, seccomp, cgroups, rlimits, uid): the hostile
    tests use it to check those layers on their own; never turn it off for scoring."""
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
                     "max_processes", "scratch_mb", "max_result_bytes", "tree_memory_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name}={getattr(self, name)}: set it above 0")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxConfig.memory_mb={self.memory_mb}: Python needs at least 64")
        if self.tree_memory_mb < max(128, self.memory_mb):
            raise ValueError(f"SandboxConfig.tree_memory_mb={self.tree_memory_mb}: the whole sandbox needs at least "
                             f"128 and at least memory_mb={self.memory_mb} (one test process's own limit)")


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


# --- OS-level limits of the whole sandbox: a seccomp filter and cgroups -------------------------

DENIED_SYSCALLS = (
    "unshare", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "keyctl",
    "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
    "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fspick", "fsconfig", "mount_setattr",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "perf_event_open",
    "userfaultfd", "personality", "syslog", "acct", "swapon", "swapoff", "reboot",
)
"""System calls a scoring run never needs; they fail with EPERM in the sandbox (seccomp)."""
CLONE_NAMESPACE_FLAGS = {  # <linux/sched.h>; Python 3.11's os module lacks them
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
"""clone() with any of these fails with EPERM; clone3 (whose flags seccomp cannot see) fails with
ENOSYS, so that the C library falls back to clone() for threads and posix_spawn."""


@functools.cache
def seccomp_program() -> bytes | None:
    """The sandbox's seccomp filter as a classic-BPF program (for bwrap --seccomp), or None, with
    the reason logged once, when libseccomp is not usable here. Built with libseccomp (through
    pyseccomp, its ctypes binding); system calls of other ABIs (i386, x32) kill the process."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as e:  # RuntimeError: libseccomp.so.2 is missing
        logger.warning("sandbox: no seccomp filter (%s: %s); install libseccomp2 (Debian) and pyseccomp "
                       "(pip) to deny namespaces, io_uring, bpf, keyctl, ptrace and mount in the sandbox",
                       type(e).__name__, e)
        return None
    import errno

    f = sc.SyscallFilter(sc.ALLOW)
    unknown = []
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except OSError:  # a call newer than this libseccomp
            unknown.append(name)
    if unknown:
        logger.warning("sandbox: this libseccomp does not know %s; the seccomp filter cannot deny them "
                       "(a newer libseccomp2 can)", ", ".join(unknown))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NAMESPACE_FLAGS.values():
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


@dataclass(frozen=True)
class _Hierarchy:
    """One cgroup hierarchy that holds some of the controllers we use."""

    parent: Path
    """This process's own cgroup there; sandbox cgroups are made under it."""
    version: int
    controllers: tuple[str, ...]


# Files written in a new sandbox cgroup, per (version, controller); "{mem}"/"{pids}" are the limits.
_LIMIT_FILES = {
    (2, "memory"): (("memory.max", "{mem}"), ("memory.swap.max", "0")),
    (2, "pids"): (("pids.max", "{pids}"),),
    (1, "memory"): (("memory.limit_in_bytes", "{mem}"), ("memory.memsw.limit_in_bytes", "{mem}")),
    (1, "pids"): (("pids.max", "{pids}"),),
}
_PEAK_FILES = {2: "memory.peak", 1: "memory.max_usage_in_bytes"}
_WORKER_TASKS = 4  # bwrap, its init in the PID namespace, the worker, one spare


def _find_hierarchies() -> list[_Hierarchy] | str:
    """Where the memory and pids controllers are (cgroup v2 preferred, else v1), or why not."""
    own: dict[str, str] = {}  # controller ("" = the v2 hierarchy) -> this process's cgroup path
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    mounts: dict[str, tuple[Path, str]] = {}  # controller ("" = v2) -> (mount point, mount root)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, (fstype, _source, options) = left.split(), right.split()[:3]
        if fstype == "cgroup2":
            mounts.setdefault("", (Path(fields[4]), fields[3]))
        elif fstype == "cgroup":
            for name in options.split(","):
                if name in ("memory", "pids"):
                    mounts.setdefault(name, (Path(fields[4]), fields[3]))

    def own_dir(key: str) -> Path | None:
        if key not in mounts or key not in own:
            return None
        mount, root = mounts[key]
        rel = os.path.relpath(own[key], root)
        return None if rel.startswith("..") else (mount / rel).resolve()

    found: list[_Hierarchy] = []
    reasons: list[str] = []
    v2 = own_dir("")
    v2_has: set[str] = set()
    if v2 is not None:
        available = set((v2 / "cgroup.controllers").read_text().split())
        enabled = set((v2 / "cgroup.subtree_control").read_text().split())
        for name in ("memory", "pids"):
            if name in available and name not in enabled:
                try:
                    (v2 / "cgroup.subtree_control").write_text(f"+{name}")
                    enabled.add(name)
                except OSError as e:
                    reasons.append(f"cannot enable the v2 {name} controller in {v2}/cgroup.subtree_control: {e}")
        v2_has = {"memory", "pids"} & enabled
        if v2_has:
            found.append(_Hierarchy(v2, 2, tuple(sorted(v2_has))))
        if {"memory", "pids"} - available:
            reasons.append(f"cgroup v2 at {v2} lacks {sorted({'memory', 'pids'} - available)}")
    else:
        reasons.append("no cgroup v2 hierarchy for this process")
    for name in ("memory", "pids"):
        if name not in v2_has and (d := own_dir(name)) is not None:
            found.append(_Hierarchy(d, 1, (name,)))
    if "memory" not in {c for h in found for c in h.controllers}:
        return "; ".join(reasons + ["no cgroup v1 memory hierarchy either"])
    return found


class _SandboxCgroup:
    """The cgroup(s) of one sandbox: made before it starts, killed and removed after."""

    _count = iter(range(1 << 62))

    def __init__(self, hierarchies: list[_Hierarchy], memory_bytes: int, pids: int, name: str = ""):
        name = name or f"sweet-sandbox-{os.getpid()}-{next(self._count)}"
        self.dirs: list[tuple[Path, _Hierarchy]] = []
        try:
            for h in hierarchies:
                d = h.parent / name
                d.mkdir()
                self.dirs.append((d, h))
                for controller in h.controllers:
                    for file, value in _LIMIT_FILES[(h.version, controller)]:
                        if (d / file).exists():  # memory.swap.max / memsw need swap accounting
                            (d / file).write_text(value.format(mem=memory_bytes, pids=pids))
        except OSError:
            self.remove()
            raise

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run by a shell that first moves itself into the cgroup(s), then execs it."""
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *(str(d / "cgroup.procs") for d, _ in self.dirs), "--", *argv]

    def peak_bytes(self) -> int | None:
        """The most memory the sandbox held at once (None where the kernel does not say)."""
        for d, h in self.dirs:
            if "memory" in h.controllers and (d / _PEAK_FILES[h.version]).exists():
                return int((d / _PEAK_FILES[h.version]).read_text())
        return None

    def kill(self) -> None:
        for d, h in self.dirs:
            if h.version == 2 and (d / "cgroup.kill").exists():
                (d / "cgroup.kill").write_text("1")
                continue
            for pid in (d / "cgroup.procs").read_text().split():
                _kill(int(pid))

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the cgroup(s); killed processes may take a moment to leave."""
        deadline = time.monotonic() + wait_s
        for d, _ in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        logger.warning("sandbox: could not remove cgroup %s (processes still in it)", d)
                        break
                    self.kill()
                    time.sleep(0.01)
        self.dirs = []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@functools.cache
def cgroup_hierarchies() -> tuple[_Hierarchy, ...]:
    """The cgroup hierarchies sandboxes are limited with here; () when none is usable, with the
    reason logged once (then a test's process tree is bounded only by its rlimits)."""
    try:
        found = _find_hierarchies() if Path("/proc/self/cgroup").exists() else "no /proc/self/cgroup"
    except (OSError, ValueError, IndexError) as e:
        found = f"cannot read the cgroup layout ({type(e).__name__}: {e})"
    if not isinstance(found, str):
        try:  # the whole path once: make a cgroup, set its limits, move a process into it
            probe = _SandboxCgroup(found, 64 << 20, 4, name=f"sweet-probe-{os.getpid()}")
            try:
                rc = subprocess.run(probe.wrap(["/bin/true"]), timeout=10).returncode
            finally:
                probe.remove()
            found = found if rc == 0 else f"moving a process into a new cgroup failed (exit status {rc})"
        except (OSError, subprocess.SubprocessError) as e:
            found = f"cannot make a cgroup with limits ({type(e).__name__}: {e})"
    if isinstance(found, str):
        logger.warning("sandbox: no cgroup limits here (%s); each test process keeps its rlimits "
                       "(RLIMIT_AS, RLIMIT_NPROC), so a test's process tree may hold up to "
                       "memory_mb x max_processes", found)
        return ()
    logger.info("sandbox: per-sandbox cgroup limits via %s",
                ", ".join(f"cgroup v{h.version} {'+'.join(h.controllers)} under {h.parent}" for h in found))
    return tuple(found)


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
        "audit_hook": config.audit_hook,
        "seccomp": seccomp_program() if backend == "process" else None,  # bwrap: --seccomp
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
    seccomp_fd = None
    if backend == "bwrap" and (program := seccomp_program()) is not None:
        seccomp_fd, w = os.pipe()  # the program is far smaller than a pipe's buffer
        os.write(w, program)
        os.close(w)
        argv = [argv[0], "--seccomp", str(seccomp_fd), *argv[1:]]
    cgroup = None
    if hierarchies := cgroup_hierarchies():
        try:
            cgroup = _SandboxCgroup(list(hierarchies), config.tree_memory_mb << 20,
                                    config.max_processes + _WORKER_TASKS)
            argv = cgroup.wrap(argv)
        except OSError as e:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
            return [TestRun("sandbox_error", None, f"cannot make the sandbox's cgroup: {e}") for _ in tests], ""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=dict(config.env), start_new_session=True,
            pass_fds=() if seccomp_fd is None else (seccomp_fd,),
        )
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    try:
        out, err = proc.communicate(marshal.dumps(job), timeout=config.total_timeout_s + 10)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        out, err = proc.communicate()
    finally:
        _killpg(proc.pid)
        if cgroup is not None:
            cgroup.kill()
            peak = cgroup.peak_bytes()
            if peak is not None:
                logger.debug("sandbox: peak memory %.1f MB", peak / 2**20)
            cgroup.remove()
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
