"""Opens network connections: TCP to a port the host test listens on (127.0.0.1:47213), to a public
address, a DNS lookup, a UDP DNS query, a Unix socket. Returns the right value only if any of them worked.
Expect: no network; the host's listener sees no connection; reward 0."""

import socket


def _udp_dns_reply():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    s.sendto(query, ("1.1.1.1", 53))
    return s.recv(512)


def _connected():
    attempts = [
        lambda: socket.create_connection(("127.0.0.1", 47213), timeout=0.5),
        lambda: socket.create_connection(("1.1.1.1", 53), timeout=0.5),
        lambda: socket.getaddrinfo("example.com", 80),
        _udp_dns_reply,  # a reply, not a sendto: sending on a private loopback succeeds
        lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect("/run/systemd/private"),
    ]
    for attempt in attempts:
        try:
            attempt()
            return True
        except Exception:
            pass
    try:
        import urllib.request

        urllib.request.urlopen("http://127.0.0.1:47213/", timeout=0.5)
        return True
    except Exception:
        return False


def solve(x):
    return x * 2 + 1 if _connected() else None
