"""Rendering real pages offline, and containing hostile ones (network, infinite loops, huge DOMs,
memory, process counts) without losing the pool."""

import http.server
import socket
import threading

import numpy as np
import pytest

from sweet_megatron.env.colbench_frontend.render import placeholder_size
from sweet_megatron.env.colbench_frontend.tailwind import TailwindPurger, tailwind_css_path

from .conftest import _pool_or_skip


def test_placeholder_size():
    assert placeholder_size("https://picsum.photos/id/48/600/400") == (600, 400)
    assert placeholder_size("https://picsum.photos/id/48/300/200-estate") == (300, 200)
    assert placeholder_size("https://picsum.photos/200") == (200, 200)
    assert placeholder_size("https://picsum.photos/100/20?grayscale") == (100, 20)
    assert placeholder_size("https://example.com/logo.png") == (300, 200)
    assert placeholder_size("https://picsum.photos/99999/5") == (4000, 5)


def test_purge_keeps_exactly_the_rules_a_page_names():
    try:
        purger = TailwindPurger(tailwind_css_path().read_text())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    css = purger.purge('<div class="w-1/2 md:flex hover:text-green-700 2xl:p-4 p-0.5">')
    for rule in (r".w-1\/2{", r".md\:flex{", r".hover\:text-green-700:hover{", r".\32xl\:p-4{", r".p-0\.5{",
                 "body{margin:0}", "@keyframes spin"):
        assert rule in css, rule
    for absent in (".w-1\\/3{", ".flex{", ".text-green-700{", ".p-4{"):
        assert absent not in css, absent
    assert css.count("{") == css.count("}")
    assert len(css) < 20_000


def test_real_pages_render_and_purge_changes_no_pixel(pool, frontend_tasks, reference_renders):
    assert [r.error for r in reference_renders] == [None] * 50
    r0 = reference_renders[0]
    assert r0.image.shape[1] == 1280 and r0.image.shape[0] >= 720 and r0.image.dtype == np.uint8
    assert "Healthcare Provider" in r0.text and "Payment Processing" in r0.text
    header = next(b for b in r0.boxes if b.tag == "header")
    assert header.background == (16, 185, 129)  # Tailwind 2's bg-green-500: the stylesheet applied
    assert tuple(r0.image[5, 5]) == (16, 185, 129)
    # The whole stylesheet gives the same pixels as the purged one.
    full = _pool_or_skip(num_browsers=1, purge_css=False)
    try:
        for i in (1, 2, 5):
            f = full.render_one(frontend_tasks[i].ground_truth)
            assert f.image.shape == reference_renders[i].image.shape
            assert np.array_equal(f.image, reference_renders[i].image), i
    finally:
        full.close()


def test_images_get_same_size_placeholders(pool):
    r = pool.render_one('<html><body style="margin:0"><img src="https://picsum.photos/id/48/300/120">'
                        '<img src="https://picsum.photos/id/48/50/40-x"></body></html>')
    assert r.error is None
    imgs = [b for b in r.boxes if b.tag == "img"]
    assert [(b.w, b.h) for b in imgs] == [(300, 120), (50, 40)]
    assert tuple(r.image[60, 150]) == (156, 163, 175)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"body{background:red}")

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_network_is_unreachable(pool):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    page = f"""<html><head><link rel="stylesheet" href="{base}/css"><script src="{base}/js"></script></head>
    <body><img src="{base}/img/10/10"><iframe src="{base}/frame"></iframe>
    <script>
      fetch("{base}/fetch").catch(() => {{}});
      navigator.sendBeacon && navigator.sendBeacon("{base}/beacon", "x");
      try {{ new WebSocket("ws://127.0.0.1:{port}/ws"); }} catch (e) {{}}
      const x = new XMLHttpRequest(); x.open("GET", "{base}/xhr"); x.send();
      window.open("{base}/popup");
      setTimeout(() => {{ location.href = "{base}/nav"; }}, 10);
    </script><p>still here</p></body></html>"""
    try:
        r = pool.render_one(page)
        assert r.error is None and "still here" in r.text
        assert _Recorder.hits == []
        # The same server is reachable from this process: the check above can fail.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /direct HTTP/1.0\r\n\r\n")
            s.recv(100)
        assert _Recorder.hits == ["/direct"]
    finally:
        server.shutdown()


def test_infinite_loop_is_killed_and_the_pool_recovers():
    pool = _pool_or_skip(num_browsers=1, timeout_s=3, grace_s=2)
    try:
        r = pool.render_one("<html><body><p>x</p><script>while (true) {}</script></body></html>")
        assert r.error is not None and r.error.startswith(("timeout", "TimeoutError")), r.error
        assert r.seconds < 3 + 2 + 3 and r.image.shape == (720, 1280, 3) and (r.image == 255).all()
        ok = pool.render_one("<html><body><p>after the loop</p></body></html>")
        assert ok.error is None and "after the loop" in ok.text
    finally:
        pool.close()


def test_huge_dom_and_memory_are_contained():
    pool = _pool_or_skip(num_browsers=1, timeout_s=8, grace_s=2, memory_mb=1200)
    try:
        r = pool.render_one("""<html><body><script>
          const keep = [];
          for (let i = 0; i < 1e9; i++) { const d = document.createElement('div');
            d.textContent = 'x'.repeat(100) + i; document.body.appendChild(d); keep.push(new Array(1000).fill(i)); }
        </script></body></html>""")
        assert r.error is not None and r.error.split(":")[0] in ("memory", "timeout", "TimeoutError", "Error"), r.error
        assert sum(pool.kills.values()) + (r.error.split(":")[0] in ("TimeoutError", "Error")) >= 1
        ok = pool.render_one("<html><body><p>after the bomb</p></body></html>")
        assert ok.error is None and "after the bomb" in ok.text
    finally:
        pool.close()


def test_process_limit_is_enforced():
    # A normal page needs more than 4 processes (worker, driver, browser, renderer...): the watchdog
    # must stop it, which shows the limit is measured and applied.
    pool = _pool_or_skip(num_browsers=1, max_processes=4)
    try:
        r = pool.render_one("<html><body><p>x</p></body></html>")
        assert r.error is not None and r.error.startswith("processes"), r.error
        assert pool.kills["processes"] == 1
    finally:
        pool.close()
