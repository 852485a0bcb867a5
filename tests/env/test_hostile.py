"""Every answer of the hostile corpus (tests/env/hostile/*.py) scores 0, leaves no process behind,
changes nothing outside its scratch directory and reaches no network, on both sandbox backends,
and under bubblewrap also with the worker's audit hook off ("bwrap-os-only": the namespaces,
seccomp filter, cgroups, rlimits and uid on their own, as when an answer gets past the hook).

Most corpus answers return the right value only if their attack worked, so a breach shows up as
reward > 0 as well as in the host-side checks below. The whole corpus is scored in one batch per
backend (parallel sandboxes) with short time limits to keep the suite quick."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sweet_megatron.env import sandbox as sandbox_module
from sweet_megatron.env.colbench_backend import evaluator as evaluator_module
from sweet_megatron.env.colbench_backend.evaluator import BackendEvaluator, EvaluatorConfig
from sweet_megatron.env.colbench_backend.tasks import Task, save_tasks
from sweet_megatron.env.sandbox import UID_RANGE, SandboxConfig

CORPUS = sorted((Path(__file__).parent / "hostile").glob("*.py"))
REFERENCE = "def solve(x):\n    # REFERENCE-MARKER-7731 (steal_reference.py looks for this)\n    return x * 2 + 1\n"
TASK = Task("Compute 2x+1. The signature of the function is: def solve(x)", REFERENCE, REFERENCE,
            {f"test{i + 1}": f"solve({i})" for i in range(10)})
CONTROL = "def solve(x):\n    return x * 2 + 1"
CANARY_DIR = Path("/tmp/sweet-hostile-canary")
SHARED_NAME = "sweet-hostile-pwned"  # write_shared.py writes this (and .dirfd) in each of SHARED_DIRS


def shared_dirs() -> list[Path]:
    """Where write_shared.py tries to write: as it computes them, from this interpreter's paths."""
    dirs = ["/tmp", "/var/tmp", "/dev/shm", sys.base_prefix, sys.prefix]
    for entry in sys.path:
        if os.path.isdir(entry):
            for pth in Path(entry).glob("*.pth"):
                dirs += [line.strip() for line in pth.read_text().splitlines() if line.startswith("/")]
    return [Path(d) for d in dict.fromkeys(dirs)]


NEW_FILES = [Path("/tmp/sweet-hostile-pwned.txt"), Path("/etc/sweet-hostile-pwned"), Path("/tmp/sweet-hostile-escaped"),
             *(d / name for d in shared_dirs() for name in (SHARED_NAME, SHARED_NAME + ".dirfd"))]
LISTEN_PORT = 47213  # network.py connects here
WORKER_MARK = "The program that runs inside a sandbox"  # from sandbox_worker.py's docstring


RUN_ENV = ("SWEET_HOSTILE_RUN", str(os.getpid()))  # in every sandbox's environment, to tell ours apart


def sandbox_processes() -> list[str]:
    """Live processes of this test's sandboxes: those with RUN_ENV in their environment or in one of
    this process's sandbox cgroups (other sandboxes on a shared host are not ours); where the
    environment cannot be read, any worker, bwrap we started or test uid."""
    found = []
    marker = ("\0" + "=".join(RUN_ENV) + "\0").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields["Uid"].split()[0])
        zombie = fields.get("State", "").strip().startswith("Z")
        try:
            ours = marker in b"\0" + (entry / "environ").read_bytes()
        except OSError:
            ours = (WORKER_MARK in cmdline or UID_RANGE[0] <= uid < UID_RANGE[1]
                    or (cmdline.startswith("bwrap") and int(fields["PPid"]) == os.getpid()))
        ours = ours or f"sweet-sandbox-{os.getpid()}-" in cgroup
        if ours and not zombie:
            found.append(f"{entry.name} uid={uid} {cmdline[:80]}")
    return found


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join()
        self.sock.close()


def skip_without_bwrap():
    if sandbox_module._bwrap_problem(SandboxConfig()) is not None:
        pytest.skip(f"bubblewrap unusable here: {sandbox_module._bwrap_problem(SandboxConfig())}")


@pytest.fixture(scope="module", params=["bwrap", "bwrap-os-only", "process"])
def outcome(request):
    backend, _, os_only = request.param.partition("-")
    if backend == "bwrap":
        skip_without_bwrap()
    for path in NEW_FILES:
        assert not path.exists(), f"{path} exists before the run: remove it"
    CANARY_DIR.mkdir(exist_ok=True)
    for p in CANARY_DIR.iterdir():
        p.unlink()
    (CANARY_DIR / "canary.txt").write_text("canary\n")
    os.chmod(CANARY_DIR / "canary.txt", 0o644)
    before = {p.name: p.stat().st_mtime_ns for p in CANARY_DIR.iterdir()}
    listener = Listener(LISTEN_PORT)
    config = SandboxConfig(backend=backend, test_timeout_s=1.0, cpu_time_s=1, total_timeout_s=3.0,
                           audit_hook=not os_only, env={**SandboxConfig().env, RUN_ENV[0]: RUN_ENV[1]})
    evaluator = BackendEvaluator(EvaluatorConfig(sandbox=config))
    answers = [p.read_text() for p in CORPUS] + [CONTROL]
    try:
        start = time.perf_counter()
        scores = evaluator.score([TASK] * len(answers), answers)
        seconds = time.perf_counter() - start
    finally:
        listener.close()
    # Killed processes take a moment to exit (freeing a large address space under load): a
    # process still there after 5 s was left behind.
    deadline = time.monotonic() + 5
    while (leftovers := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    result = {
        "scores": dict(zip([p.name for p in CORPUS] + ["control"], scores)),
        "leftovers": leftovers,
        "canary_before": before,
        "canary_after": {p.name: p.stat().st_mtime_ns for p in CANARY_DIR.iterdir()},
        "canary_text": (CANARY_DIR / "canary.txt").read_text() if (CANARY_DIR / "canary.txt").exists() else None,
        "canary_mode": oct(os.stat(CANARY_DIR / "canary.txt").st_mode & 0o777) if (CANARY_DIR / "canary.txt").exists() else None,
        "new_files": [str(p) for p in NEW_FILES if p.exists()],
        "connections": listener.accepted,
    }
    print(f"\nhostile corpus on {request.param}: {len(CORPUS)} answers in {seconds:.1f} s")
    for name, s in result["scores"].items():
        print(f"  {name:24s} reward={s.reward} statuses={sorted(set(s.details['statuses']))}")
    return result


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("name", [p.name for p in CORPUS])
def test_hostile_answer_scores_zero(outcome, name):
    score = outcome["scores"][name]
    assert score.reward == 0.0 and not score.success, score.details


def test_control_answer_still_passes(outcome):
    assert outcome["scores"]["control"].success  # the sandbox is not simply failing everything


def test_no_process_left_behind(outcome):
    assert outcome["leftovers"] == []


def test_nothing_outside_scratch_changed(outcome):
    assert outcome["canary_after"] == outcome["canary_before"]
    assert outcome["canary_text"] == "canary\n" and outcome["canary_mode"] == "0o644"
    assert outcome["new_files"] == []


def test_no_network(outcome):
    assert outcome["connections"] == 0


def test_harness_survives_exits_and_signals(outcome):
    statuses = outcome["scores"]["exit_and_signals.py"].details["statuses"]
    # killing the parent or everyone did not stop the harness: every test has its own outcome
    assert "sandbox_error" not in statuses and statuses[1] == "crash"


# --- the OS-level layers on their own (no audit hook) ----------------------------------------------

SYSCALLS = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
X86 = os.uname().machine == "x86_64"
def call(x86, arm, *args):
    ctypes.set_errno(0)
    r = libc.syscall(x86 if X86 else arm, *args)
    return errno.errorcode.get(ctypes.get_errno(), "0") if r < 0 else "returned"
def probe():
    buf = ctypes.create_string_buffer(256)
    return {"unshare(CLONE_NEWUSER)": call(272, 97, 0x10000000), "clone(CLONE_NEWUSER)": call(56, 220, 0x10000011, 0, 0, 0, 0),
            "clone3": call(435, 435, buf, 88), "io_uring_setup": call(425, 425, 8, buf),
            "keyctl": call(250, 219, 0, -3, 1), "ptrace(TRACEME)": call(101, 117, 0, 0, 0, 0),
            "setns": call(308, 268, 0, 0), "mount": call(165, 40, b"none", b"/scratch", b"tmpfs", 0, 0)}
"""


@pytest.mark.parametrize("backend", ["bwrap", "process"])
def test_seccomp_filter_denies_the_calls_a_scoring_run_never_needs(backend):
    if backend == "bwrap":
        skip_without_bwrap()
    if sandbox_module.seccomp_program() is None:
        pytest.skip("libseccomp (pyseccomp) is not usable here")
    config = SandboxConfig(backend=backend, audit_hook=False)
    (run,) = sandbox_module.run_tests(SYSCALLS, ["probe()"], config)
    assert run.status == "ok", run
    got = evaluator_module.decode_value(run.value_json)
    # EPERM from the filter, not the kernel's own answer (EINVAL, EFAULT or success) for these arguments
    assert got == {name: "ENOSYS" if name == "clone3" else "EPERM" for name in got}, got


def test_tree_memory_limit_stops_a_bomb_spread_over_processes(monkeypatch):
    """memory_tree.py's children each stay under RLIMIT_AS; only the sandbox's cgroup bounds their sum."""
    skip_without_bwrap()
    if not sandbox_module.cgroup_hierarchies():
        pytest.skip("no usable cgroup memory controller here (see the sandbox's logged reason)")
    code = (Path(__file__).parent / "hostile" / "memory_tree.py").read_text()
    config = SandboxConfig(backend="bwrap", audit_hook=False, test_timeout_s=20.0, total_timeout_s=25.0)  # a loaded host
    (run,) = sandbox_module.run_tests(code, ["solve(3)"], config)
    assert run.status in ("timeout", "crash") or run.value_json == "null", run
    # The same answer without the cgroup: the rlimits alone let it hold its 1.8 GB.
    monkeypatch.setattr(sandbox_module, "cgroup_hierarchies", lambda: ())
    (run,) = sandbox_module.run_tests(code, ["solve(3)"], config)
    assert (run.status, run.value_json) == ("ok", "7"), run


def test_cgroup_fallback_reason_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_module, "_find_hierarchies", lambda: "cgroup v2 at /x lacks ['memory']")
    sandbox_module.cgroup_hierarchies.cache_clear()
    try:
        with caplog.at_level("WARNING", logger=sandbox_module.logger.name):
            assert sandbox_module.cgroup_hierarchies() == ()
            assert sandbox_module.cgroup_hierarchies() == ()
    finally:
        sandbox_module.cgroup_hierarchies.cache_clear()
    warned = [r.getMessage() for r in caplog.records if "no cgroup limits" in r.getMessage()]
    assert len(warned) == 1 and "lacks ['memory']" in warned[0] and "RLIMIT_AS" in warned[0]


def test_scoring_real_rows_stays_within_the_memory_ceiling(real_tasks, tmp_path):
    """`sweet-colbench score --self` on every 4th shipped row, run in a cgroup of its own: all succeed,
    and the whole tree's peak stays under the stated ceiling (EvaluatorConfig.memory_ceiling_mb plus
    256 MB for the host process). 200 rows measured: 184 MB (README)."""
    skip_without_bwrap()
    hierarchies = sandbox_module.cgroup_hierarchies()
    if not any(h.version == 1 and "memory" in h.controllers for h in hierarchies):
        # under v2 the measuring cgroup holds a process, so no sandbox cgroup could be made inside it
        pytest.skip("needs the cgroup v1 memory controller to measure a tree that makes cgroups itself")
    subset = tmp_path / "rows.jsonl"
    save_tasks(real_tasks[::4], subset)
    ceiling_mb = EvaluatorConfig().memory_ceiling_mb + 256
    measure = sandbox_module._SandboxCgroup(list(hierarchies), ceiling_mb << 20, 1 << 16)
    try:
        done = subprocess.run(measure.wrap([sys.executable, "-m", "sweet_megatron.env.cli", "score", "--tasks",
                                            str(subset), "--self", "--backend", "bwrap"]),
                              capture_output=True, text=True, timeout=300)
        peak_mb = measure.peak_bytes() / 2**20
    finally:
        measure.kill()
        measure.remove()
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{summary['n']} rows scored in {summary['seconds']} s; whole tree peak {peak_mb:.0f} MB "
          f"(ceiling {ceiling_mb} MB)")
    assert summary["success_rate"] == 1.0, summary
    assert peak_mb < ceiling_mb


def test_tree_memory_limit_must_hold_one_test():
    with pytest.raises(ValueError, match="tree_memory_mb=600.*memory_mb=1024"):
        SandboxConfig(memory_mb=1024, tree_memory_mb=600)


def test_sandbox_cgroup_kill_ends_a_daemon_outside_the_session():
    """What the host does after every sandbox: the cgroup holds every process the sandbox started,
    a daemon that left the session included, and kill + remove ends them all."""
    if not sandbox_module.cgroup_hierarchies():
        pytest.skip("no usable cgroups here")
    cgroup = sandbox_module._SandboxCgroup(list(sandbox_module.cgroup_hierarchies()), 256 << 20, 16)
    proc = subprocess.Popen(cgroup.wrap(["/bin/sh", "-c", "(setsid sleep 600 &); exec sleep 600"]))
    try:
        procs = cgroup.dirs[0][0] / "cgroup.procs"
        deadline = time.monotonic() + 5
        # 2 once settled: the sandbox's process and the daemon (the subshell that started the daemon
        # is a third member until it exits, longer on a busy machine)
        while len(procs.read_text().split()) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        pids = [int(p) for p in procs.read_text().split()]
        assert proc.pid in pids and len(pids) == 2, pids
    finally:
        cgroup.kill()
        proc.wait(timeout=5)
        cgroup.remove()
    assert cgroup.dirs == [] and proc.returncode == -9

    def alive(pid):  # a killed orphan may stay a zombie until its new parent reaps it
        try:
            return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return False

    assert [pid for pid in pids if alive(pid)] == []
