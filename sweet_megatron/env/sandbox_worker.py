"""The program that runs inside a sandbox: one process per (code, test list), stdlib only.

It is started by sandbox.py as `python -P -s -S -c <this file's source>` and reads a job from
stdin (marshal, written by the trusted host):

    {"code": str, "tests": [str, ...], "limits": {...}, "scratch": str,
     "drop_uid": int | null, "pid_namespace": bool, "python_paths": [str, ...],
     "audit_hook": bool, "seccomp": bytes | null}

For each test expression it forks a child that, before touching the untrusted code, starts its
own session, points fds 0-2 at /dev/null, sets rlimits (CPU, address space, file size, open
files, processes, no core), drops to a uid of its own (`drop_uid + i`, when the worker runs as
root), moves into a private directory under the scratch directory and installs an audit hook that
refuses process creation (also the _posixsubprocess and _posixshmem imports, which fork or make
shared memory without an event of their own), signals, sockets, ctypes, file access outside the
scratch directory and the interpreter's own files, and directory fds outside the scratch
directory (a relative open with dir_fd= would pass the path check). The hook is a tripwire, not
the boundary: the job may turn it off ("audit_hook": false, for testing the layers below it), and
the namespaces, seccomp filter, cgroups, rlimits and uid hold without it. Only then does it compile and exec the code in a
fresh namespace and eval the test call. The return value is encoded as tagged JSON of plain data
(exact builtin types only; anything else becomes an opaque marker that never compares equal) and
written to a pipe that only this child holds. The worker reads that pipe until a wall-clock
deadline, kills whatever the test left behind (every process of the pid namespace under
bubblewrap, otherwise the child's process group and every process of the test's uid) and prints
one JSON line per test on stdout, then {"done": true}.

Nothing from the untrusted code reaches the worker but bytes on that pipe, and the worker never
decodes them: the host parses and compares values (evaluator.py).
"""

import _signal as signal  # the signal module imports enum: 8 ms of start-up
import gc
import marshal
import os
import resource
import select
import sys
import time
from _json import encode_basestring_ascii as _encode_str

TAG_ERROR = b"E"
TAG_VALUE = b"V"


def _json_line(record):
    """One flat record (str/int/None values) as a JSON object on one line."""
    parts = []
    for key, value in record.items():
        if value is None:
            text = "null"
        elif type(value) is int:
            text = str(value)
        else:
            text = _encode_str(str(value))
        parts.append(f"{_encode_str(key)}: {text}")
    return "{" + ", ".join(parts) + "}\n"


def _encode_value(value, max_nodes=200_000, max_depth=100):
    """Return `value` as tagged JSON text of plain data; raises ValueError when it cannot.

    Tags: {"l": list}, {"t": tuple}, {"s": set}, {"f": frozenset}, {"d": [[k, v], ...]},
    {"b": hex bytes}, {"ba": hex bytearray}, {"c": [re, im]}, {"r": [type, repr]} for a few
    stdlib value types, {"o": type} for anything else (opaque: never equal). Only exact builtin
    types are accepted as plain data, so a subclass with a custom __eq__ is opaque.
    (The json module is not used: importing it costs a third of this process's start-up.)
    """
    nodes = [0]
    value_types = {("decimal", "Decimal"), ("fractions", "Fraction"), ("datetime", "date"),
                   ("datetime", "datetime"), ("datetime", "time"), ("datetime", "timedelta")}

    def seq(tag, items, depth):
        return "{" + _encode_str(tag) + ": [" + ", ".join(enc(v, depth + 1) for v in items) + "]}"

    def enc(x, depth):
        nodes[0] += 1
        if nodes[0] > max_nodes or depth > max_depth:
            raise ValueError("result too large or too deeply nested")
        t = type(x)
        if x is None:
            return "null"
        if t is bool:
            return "true" if x else "false"
        if t is int:
            return str(x)  # ValueError past 4300 digits
        if t is float:
            if x != x:
                return "NaN"
            if x in (float("inf"), float("-inf")):
                return "Infinity" if x > 0 else "-Infinity"
            return repr(x)
        if t is str:
            return _encode_str(x)
        if t is list:
            return seq("l", x, depth)
        if t is tuple:
            return seq("t", x, depth)
        if t is set:
            return seq("s", x, depth)
        if t is frozenset:
            return seq("f", x, depth)
        if t is dict:
            pairs = ", ".join(f"[{enc(k, depth + 1)}, {enc(v, depth + 1)}]" for k, v in x.items())
            return '{"d": [' + pairs + "]}"
        if t is bytes:
            return '{"b": "' + x.hex() + '"}'
        if t is bytearray:
            return '{"ba": "' + bytes(x).hex() + '"}'
        if t is complex:
            return seq("c", (x.real, x.imag), depth)
        module = str(getattr(t, "__module__", "") or "")
        name = str(getattr(t, "__qualname__", "?") or "?")
        if module == "numpy" and getattr(x, "ndim", None) == 0 and hasattr(x, "item"):
            return enc(x.item(), depth + 1)  # numpy scalars compare equal to Python numbers
        if (module, name) in value_types:
            return seq("r", (f"{module}.{name}", repr(x)), depth)
        return '{"o": ' + _encode_str(f"{module}.{name}"[:200]) + "}"

    return enc(value, 0)


def _install_guard(scratch, read_roots, max_files=64):
    """Audit hook for the test child: deny what a function under test never needs."""
    deny = {
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
        "subprocess.Popen", "os.kill", "os.killpg", "os.setuid", "os.setgid", "os.chroot",
        "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.sendto", "sys.addaudithook", "resource.setrlimit",
        "resource.prlimit",
        "sys.remote_exec", "mmap.__new__", "os.link", "os.symlink", "os.chown", "os.chflags",
        "cpython.PyInterpreterState_New",
    }
    path_events = {
        "os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.utime",
        "os.truncate", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    }
    list_events = {"os.listdir", "os.scandir"}
    # Modules that create processes or shared memory without raising an audit event of their own
    # (_posixsubprocess.fork_exec forks and execs an interpreter that has no hook).
    deny_imports = {"_posixsubprocess", "_posixshmem"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    fsdecode, fspath, realpath, join, getcwd, isdir = (
        os.fsdecode, os.fspath, os.path.realpath, os.path.join, os.getcwd, os.path.isdir,
    )
    scratch = realpath(scratch)

    def inside(path, roots):
        if isinstance(path, int):
            return True  # an fd the child already holds
        try:
            p = fsdecode(fspath(path))
        except Exception:
            return False
        if not p.startswith("/"):
            p = join(getcwd(), p)
        p = realpath(p)
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    opened_for_writing = [0]

    def hook(event, args):
        if event in deny or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in deny_imports:
            raise PermissionError(f"sandbox: import {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & write_flags
            )
            if not inside(path, [scratch] if writing else [scratch, *read_roots]):
                raise PermissionError(f"sandbox: open({path!r}) is not allowed")
            if not writing and not inside(path, [scratch]) and isdir(path):
                # The event does not carry dir_fd: os.open(name, O_CREAT, dir_fd=<a read-only
                # root>) would pass as a relative path in the scratch directory.
                raise PermissionError(f"sandbox: open({path!r}) of a directory is not allowed")
            if writing:
                # With RLIMIT_FSIZE this bounds what a test can write where the scratch
                # directory is not a size-capped tmpfs (the fallback backend).
                opened_for_writing[0] += 1
                if opened_for_writing[0] > max_files:
                    raise PermissionError(f"sandbox: more than {max_files} files opened for writing")
        elif event in path_events:
            for a in args[:2]:
                if isinstance(a, (str, bytes)) or hasattr(a, "__fspath__"):
                    if not inside(a, [scratch]):
                        raise PermissionError(f"sandbox: {event}({a!r}) is not allowed")
        elif event in list_events:
            if args and args[0] is not None and not inside(args[0], [scratch, *read_roots]):
                raise PermissionError(f"sandbox: {event} is not allowed here")

    sys.addaudithook(hook)


def _run_child(job, index, wfd):
    """In the forked child: confine, run one test, write the tagged result to wfd, exit."""
    limits = job["limits"]
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, 4096)
    cpu = int(limits["cpu_time_s"])
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NPROC, (limits["processes"],) * 2),
    ):
        resource.setrlimit(res, value)
    if job["drop_uid"] is not None:
        uid = job["drop_uid"] + index
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.umask(0o077)
    home = os.path.join(job["scratch"], f"t{index}")
    os.mkdir(home, 0o700)
    os.chdir(home)
    read_roots = [sys.base_prefix, sys.prefix, *job["python_paths"], "/usr/lib", "/usr/share/zoneinfo",
                  "/etc/localtime", "/dev/null", "/dev/urandom"]
    if job["audit_hook"]:
        _install_guard(home, read_roots)
    code, expr = job["code"], job["tests"][index]
    job.clear()  # the child needs nothing else of the job
    write = os.write
    exit_now = os._exit
    try:
        namespace = {"__name__": "__answer__", "__builtins__": __builtins__}
        exec(compile(code, "<answer>", "exec"), namespace)
        value = eval(compile(expr, "<test>", "eval"), namespace)
        payload = TAG_VALUE + _encode_value(value).encode("ascii")
    except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included
        try:
            text = f"{type(e).__name__}: {e}"[:300]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            text = "exception"
        payload = TAG_ERROR + text.encode("utf-8", "replace")
    view = memoryview(payload)
    while view:
        n = write(wfd, view[:65536])
        view = view[n:]
    exit_now(0)


def _kill_leftovers(job, child_pid, index):
    """Kill every process the test may have left behind."""
    if job["pid_namespace"]:
        try:
            os.kill(-1, signal.SIGKILL)  # all of the namespace but init and this worker
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(child_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if job["drop_uid"] is None:
        return
    uid = job["drop_uid"] + index
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            os.kill(int(name), signal.SIGKILL)
                        break
        except (OSError, ValueError):
            pass


def _wait_until(pid, deadline):
    """The child's wait status, or None if it is still running at the deadline."""
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
    try:
        while True:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                return raw
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.002))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _run_test(job, index, deadline):
    limits = job["limits"]
    cap = int(limits["result_bytes"])
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            _run_child(job, index, wfd)
        finally:
            os._exit(70)
    os.close(wfd)
    chunks, size, status, error = [], 0, None, None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select([rfd], [], [], left)
        if not ready:
            continue
        data = os.read(rfd, 65536)
        if not data:
            break
        size += len(data)
        if size > cap + 1:
            status, error = "too_large", f"result over {cap} bytes"
            break
        chunks.append(data)
    os.close(rfd)
    exit_code = None
    if status is None:
        exit_code = _wait_until(pid, deadline)
        if exit_code is None:
            status = "timeout"
    if exit_code is None:  # still running (not reaped, so its pid cannot have been reused)
        os.kill(pid, signal.SIGKILL)
    _kill_leftovers(job, pid, index)
    if exit_code is None:
        os.waitpid(pid, 0)
    if status is not None:
        return {"i": index, "status": status, "error": error}
    payload = b"".join(chunks)
    if os.WIFSIGNALED(exit_code):
        sig = os.WTERMSIG(exit_code)
        kind = "timeout" if sig in (signal.SIGXCPU, signal.SIGKILL) else "crash"
        why = " (CPU time, wall time or the sandbox's memory limit)" if sig == signal.SIGKILL else ""
        return {"i": index, "status": kind, "error": f"killed by signal {sig}{why}"}
    if os.WEXITSTATUS(exit_code) != 0 or not payload:
        return {"i": index, "status": "crash", "error": f"exit status {os.WEXITSTATUS(exit_code)}"}
    body = payload[1:].decode("utf-8", "replace")
    if payload[:1] == TAG_VALUE:
        return {"i": index, "status": "ok", "value": body}
    return {"i": index, "status": "error", "error": body[:300]}


def _load_seccomp(program):
    """Install the host's classic-BPF seccomp program on this process and all it will start (the
    'process' backend; bwrap installs it itself with --seccomp)."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))  # 8 bytes per instruction
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if (libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0
            or libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def main():
    job = marshal.loads(sys.stdin.buffer.read())  # from the trusted host
    if job["seccomp"]:
        _load_seccomp(job["seccomp"])
    sys.path[:] = [p for p in sys.path if p] + list(job["python_paths"])
    if "numpy" in job["code"]:
        try:
            # Once here (trusted, before any fork) rather than once per test child; and numpy
            # needs the `ctypes.pythonapi` handle that the audit hook would refuse later.
            import ctypes  # noqa: F401

            import numpy  # noqa: F401
        except ImportError:
            pass
    # Warm up the compiler and the encoder once here: done first in each forked child instead,
    # they cost about 10 ms per test (lazy parser set-up, copy-on-write faults).
    exec(compile("def _w(x):\n    return [x, (x,), {x: x}]\n", "<warmup>", "exec"), {})
    _encode_value(eval(compile("[1, (2.5,), {3: 'a'}, {4}, None]", "<warmup>", "eval")))
    gc.freeze()
    limits = job["limits"]
    end = time.monotonic() + float(limits["total_timeout_s"])
    out = sys.stdout
    for index in range(len(job["tests"])):
        now = time.monotonic()
        if now >= end:
            result = {"i": index, "status": "timeout", "error": "sandbox time budget spent"}
        else:
            result = _run_test(job, index, min(end, now + float(limits["test_timeout_s"])))
        out.write(_json_line(result))
        out.flush()
    out.write('{"done": true}\n')
    out.flush()


if __name__ == "__main__":
    main()
