"""Calls the system calls a scoring run never needs, through ctypes: user, mount and network
namespaces (unshare, clone, setns, then a mount inside the new namespace), io_uring, bpf, keyctl
and add_key, ptrace, process_vm_readv, perf_event_open, userfaultfd. Test x tries group x; the
right value comes back only if a call succeeded. Expect: the audit hook refuses ctypes and, without
it, the seccomp filter fails each call with EPERM (clone3: ENOSYS); reward 0. System call numbers
for x86_64 and aarch64 (elsewhere every call fails as an unknown number)."""

import ctypes
import os

NR = {  # name: (x86_64, aarch64)
    "clone": (56, 220), "mount": (165, 40), "unshare": (272, 97), "setns": (308, 268),
    "io_uring_setup": (425, 425), "bpf": (321, 280), "keyctl": (250, 219), "add_key": (248, 217),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
}
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID, SIGCHLD = 0x20000, 0x10000000, 0x40000000, 0x20000000, 17


def _call(libc, name, *args):
    column = 1 if os.uname().machine == "aarch64" else 0
    return libc.syscall(NR[name][column], *args)


def _attempts(libc, group):
    buf = ctypes.create_string_buffer(256)
    if group == 0:
        yield _call(libc, "unshare", CLONE_NEWUSER) == 0
    elif group == 1:
        pid = _call(libc, "clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        yield pid > 0
    elif group == 2:
        # the classic escalation: a user namespace gives CAP_SYS_ADMIN over a new mount namespace
        if _call(libc, "unshare", CLONE_NEWUSER | CLONE_NEWNS) == 0:
            yield _call(libc, "mount", b"none", b"/scratch", b"tmpfs", 0, 0) == 0
        yield _call(libc, "unshare", CLONE_NEWNET) == 0
        yield _call(libc, "unshare", CLONE_NEWPID) == 0
    elif group == 3:
        yield _call(libc, "io_uring_setup", 8, buf) >= 0
    elif group == 4:
        attr = (ctypes.c_uint32 * 8)(2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
        yield _call(libc, "bpf", 0, attr, ctypes.sizeof(attr)) >= 0
    elif group == 5:
        yield _call(libc, "keyctl", 0, -3, 1) >= 0  # KEYCTL_GET_KEYRING_ID of the session keyring
        yield _call(libc, "add_key", b"user", b"sweet-hostile", b"x", 1, -2) >= 0
    elif group == 6:
        yield _call(libc, "ptrace", 0, 0, 0, 0) == 0  # PTRACE_TRACEME
    elif group == 7:
        src = ctypes.create_string_buffer(b"secret", 16)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        remote = (ctypes.c_void_p * 2)(ctypes.addressof(src), 16)
        yield _call(libc, "process_vm_readv", os.getpid(), local, 1, remote, 1, 0) > 0
    elif group == 8:
        attr = (ctypes.c_uint32 * 32)(1, 128)  # PERF_TYPE_SOFTWARE, size; config 0 = cpu-clock
        attr[10] = 1 << 5 | 1 << 6  # exclude_kernel, exclude_hv: what perf_event_paranoid=2 allows
        yield _call(libc, "perf_event_open", attr, 0, -1, -1, 0) >= 0
    else:
        yield _call(libc, "userfaultfd", 0o2000000 | 1) >= 0  # O_CLOEXEC | UFFD_USER_MODE_ONLY


def solve(x):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        worked = any(list(_attempts(libc, x)))
    except Exception:
        worked = False
    return x * 2 + 1 if worked else None
