"""Render pages offline in headless Chromium: full-page screenshots, the page's visible text and the
boxes of its elements, with every untrusted page contained.

Debian's `chromium` (`/usr/bin/chromium`) is driven by Playwright for Python (its wheel carries
its own driver; no browser is ever downloaded: `executable_path` points at the system binary).

    pool = BrowserPool(RenderConfig(num_browsers=2))
    results = pool.render(["<html>...</html>", ...])    # one RenderResult per page, in order
    pool.close()

Containment, per page:
- network: every request the page makes is answered locally or refused. The Tailwind stylesheet is
  served from the local copy (tailwind.py), images get a same-size grey placeholder (the size is read
  from the URL, as in picsum.photos/.../W/H; other images 300x200), everything else (scripts,
  fetch/XHR, fonts, WebSockets) is aborted, and navigations (links followed by scripts, frames)
  of the page get "204 No Content", which cancels them, so the page photographed is the one given;
  frames get an empty document. Behind that, Chromium is started with a
  dead proxy and a host resolver that resolves nothing, so a request that escaped the router
  still reaches no one.
- time: `timeout_s` covers loading, measuring and the screenshot (Playwright's own timeouts),
  and the parent kills the browser's whole process tree when a page overstays by `grace_s`
  (an infinite loop in a script blocks the renderer, so Playwright alone cannot end it).
- memory and processes: a watchdog thread in the parent sums the resident memory of the worker's
  process tree (worker, Playwright driver, every Chromium process) and counts its processes while
  a page renders; over `memory_mb` or `max_processes` the tree is killed. V8's heap is capped
  with `--js-flags=--max-old-space-size`, and site isolation is off so iframes add no processes.
A killed worker is replaced by a fresh one for the next page; the failed page gets a RenderResult
with `error` set and a blank (white) screenshot of the viewport's size, so a hostile answer scores
like an empty page instead of stopping the batch.

Each browser lives in its own worker process (one page at a time; `num_browsers` of them render
in parallel), so killing one never touches the others or the caller.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import psutil

from sweet_megatron.env.colbench_frontend.tailwind import TailwindPurger, tailwind_css_path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> str | None:
    """The system Chromium: $SWEET_CHROMIUM, else Debian's path, else `chromium` on PATH."""
    env = os.environ.get("SWEET_CHROMIUM")
    if env:
        return env if os.path.isfile(env) else None
    for path in CHROMIUM_CANDIDATES:
        if os.path.isfile(path):
            return path
    return shutil.which("chromium")


class RenderUnavailable(RuntimeError):
    """Chromium, Playwright or the stylesheet is missing; the message names the fix."""


@dataclass
class RenderConfig:
    """How pages are rendered and contained."""

    width: int = 1280
    """Viewport width in CSS pixels (device scale factor 1)."""
    height: int = 720
    """Viewport height: the shortest screenshot; full-page screenshots grow past it."""
    max_height: int = 6000
    """Full-page screenshots are cut at this height (a page taller than that is compared on its top)."""
    timeout_s: float = 15.0
    """Seconds a page may take to load, be measured and be photographed."""
    grace_s: float = 5.0
    """Extra seconds before the parent kills a worker whose page overstayed timeout_s."""
    memory_mb: int = 2048
    """Resident memory of one worker's process tree (worker + driver + Chromium) while rendering."""
    max_processes: int = 24
    """Processes in one worker's tree while rendering."""
    js_heap_mb: int = 256
    """V8 old-space cap for the page's scripts."""
    javascript: bool = True
    """Run the page's scripts (contained as above); False renders the static markup only."""
    purge_css: bool = True
    """Serve each page only the Tailwind rules its HTML can use (tailwind.TailwindPurger; the same
    pixels, a fraction of the time); False serves the whole 2.9 MB stylesheet."""
    num_browsers: int = 2
    """Browsers (worker processes) rendering in parallel."""
    startup_timeout_s: float = 90.0
    """Seconds a worker may take to start its browser."""
    chromium: str | None = None
    """Chromium binary (default: find_chromium())."""

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64 or self.max_height < self.height:
            raise ValueError(f"RenderConfig: width={self.width}, height={self.height}, max_height={self.max_height}: "
                             "width and height must be at least 64 and max_height at least height")
        if self.timeout_s <= 0 or self.grace_s < 0 or self.memory_mb < 128 or self.max_processes < 4:
            raise ValueError("RenderConfig: timeout_s > 0, grace_s >= 0, memory_mb >= 128, max_processes >= 4 required")
        if self.num_browsers < 1:
            raise ValueError(f"RenderConfig.num_browsers={self.num_browsers}: set it to 1 or more")


@dataclass
class Box:
    """One rendered element's box in page pixels, with what it paints."""

    x: float
    y: float
    w: float
    h: float
    tag: str
    background: tuple[int, int, int] | None
    """Its own opaque background colour (RGB), None when transparent."""
    color: tuple[int, int, int]
    """Its text colour (RGB)."""
    text: str
    """Its own text (text nodes directly inside it), stripped, at most 200 characters."""


@dataclass
class RenderResult:
    """What one page looked like."""

    image: np.ndarray
    """[H, W, 3] uint8 RGB full-page screenshot (W = config.width, config.height <= H <= max_height)."""
    text: str = ""
    """The page's visible text (document.body.innerText)."""
    boxes: list[Box] = field(default_factory=list)
    """Boxes of the visible elements, in document order (at most 3000)."""
    page_height: int = 0
    """The page's full scroll height (before the max_height cut)."""
    error: str | None = None
    """Why the page could not be rendered (timeout, memory, processes, crash); image is then blank."""
    seconds: float = 0.0


def blank_result(config: RenderConfig, error: str | None = None, seconds: float = 0.0) -> RenderResult:
    """A white viewport: what a page that did not render (or an empty answer) looks like."""
    return RenderResult(np.full((config.height, config.width, 3), 255, np.uint8), "", [], config.height, error, seconds)


# ---------------------------------------------------------------- inside the worker process

_IMAGE_SIZE = re.compile(r"/(\d{1,6})(?:/(\d{1,6}))?(?:[^/\d][^/]*)?/?(?:\?.*)?$")
_MEASURE_JS = """() => {
  const rgb = (s) => { const m = s.match(/rgba?\\(([\\d.]+), ([\\d.]+), ([\\d.]+)(?:, ([\\d.]+))?\\)/);
    if (!m) return null; if (m[4] !== undefined && parseFloat(m[4]) < 0.5) return null;
    return [Math.round(+m[1]), Math.round(+m[2]), Math.round(+m[3])]; };
  const out = []; const all = document.body ? document.body.querySelectorAll('*') : [];
  for (let i = 0; i < all.length && out.length < 3000; i++) {
    const el = all[i]; const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || cs.display === 'none') continue;
    let own = '';
    for (const n of el.childNodes) if (n.nodeType === 3) own += n.textContent;
    out.push([r.left + scrollX, r.top + scrollY, r.width, r.height, el.tagName.toLowerCase(),
              rgb(cs.backgroundColor), rgb(cs.color) || [0, 0, 0], own.trim().replace(/\\s+/g, ' ').slice(0, 200)]);
  }
  const body = document.body;
  const bodyBg = body ? rgb(getComputedStyle(body).backgroundColor) : null;
  const height = Math.max(body ? body.scrollHeight : 0, document.documentElement.scrollHeight);
  return {boxes: out, height: height, text: body ? body.innerText.slice(0, 20000) : '', bodyBg: bodyBg};
}"""


def placeholder_size(url: str) -> tuple[int, int]:
    """(width, height) of an image URL's placeholder: picsum-style '.../W/H' (or '.../S' square)
    at the end of the path, clamped to 1..4000; 300x200 when the URL names no size."""
    m = _IMAGE_SIZE.search(url.split("#")[0])
    if not m:
        return 300, 200
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    return max(1, min(w, 4000)), max(1, min(h, 4000))


def _placeholder_png(size: tuple[int, int], cache: dict) -> bytes:
    if size not in cache:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", size, (156, 163, 175)).save(buf, format="PNG")
        cache[size] = buf.getvalue()
    return cache[size]


def chromium_args(config: RenderConfig) -> list[str]:
    return [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--no-first-run", "--mute-audio",
        "--disable-features=site-per-process,IsolateOrigins,Translate,MediaRouter,OptimizationHints",
        "--disable-site-isolation-trials", "--renderer-process-limit=2",
        f"--js-flags=--max-old-space-size={config.js_heap_mb}",
        # Backstops behind the request router: nothing resolves and the only proxy is dead.
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--font-render-hinting=none",
    ]


def _is_tailwind(url: str) -> bool:
    path = url.split("?")[0].split("#")[0]
    return path.endswith(("/tailwind.min.css", "/tailwind.css"))


class _Session:
    """One browser context and page per rendered page (nothing, not even Blink's memory cache, is
    shared between pages); the request router serves the stylesheet purged for that page."""

    def __init__(self, browser, config: RenderConfig, purger: TailwindPurger | None, css: bytes):
        self.browser, self.config, self.purger, self.css = browser, config, purger, css
        self.png_cache: dict = {}
        self.page_css = css
        self.context = self.page = None

    def _open(self) -> None:
        cfg = self.config
        self.context = self.browser.new_context(
            viewport={"width": cfg.width, "height": cfg.height}, device_scale_factor=1,
            java_script_enabled=cfg.javascript, service_workers="block", accept_downloads=False)
        self.context.route("**/*", self._route)
        if hasattr(self.context, "route_web_socket"):
            self.context.route_web_socket("**/*", lambda ws: ws.close())
        self.context.set_default_timeout(cfg.timeout_s * 1000)
        self.page = self.context.new_page()
        main = self.page
        self.context.on("page", lambda p: p.close() if p is not main else None)  # popups
        self.page.on("dialog", lambda d: d.dismiss())

    def _route(self, r) -> None:
        req = r.request
        if _is_tailwind(req.url):
            r.fulfill(status=200, content_type="text/css", body=self.page_css)
        elif req.resource_type == "image":
            r.fulfill(status=200, content_type="image/png",
                      body=_placeholder_png(placeholder_size(req.url), self.png_cache))
        elif req.is_navigation_request():
            try:
                frame = req.frame
            except Exception:  # noqa: BLE001 - a popup's navigation has no frame yet
                frame = None
            if frame is None:
                r.abort("blockedbyclient")
            elif frame == self.page.main_frame:
                r.fulfill(status=204)  # "No Content" cancels a navigation: the page stays where it is
            else:
                r.fulfill(status=200, content_type="text/html", body="<html></html>")  # frames: empty
        else:
            r.abort("blockedbyclient")

    def close(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            except Exception:  # noqa: BLE001 - a dead page must not stop the worker
                pass
        self.context = self.page = None

    def render(self, html: str) -> dict:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        cfg = self.config
        start = time.perf_counter()
        timeout_ms = cfg.timeout_s * 1000
        self.page_css = self.purger.purge(html).encode() if self.purger else self.css
        try:
            self._open()
            self.page.set_content(html, wait_until="domcontentloaded", timeout=timeout_ms)
            try:  # a page whose load event never comes (a frame or request left hanging) is still photographed
                self.page.wait_for_load_state("load", timeout=timeout_ms / 3)
            except PlaywrightTimeout:
                pass
            info = self.page.evaluate(_MEASURE_JS)
            height = int(info["height"] or cfg.height)
            shot_h = max(cfg.height, min(height, cfg.max_height))
            png = self.page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": cfg.width, "height": shot_h},
                                       type="png", animations="disabled", timeout=timeout_ms)
            return {"png": png, "text": info["text"] or "", "boxes": info["boxes"], "height": height,
                    "error": None, "seconds": time.perf_counter() - start}
        except PlaywrightError as e:
            return {"png": None, "text": "", "boxes": [], "height": 0, "seconds": time.perf_counter() - start,
                    "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        finally:
            self.close()


def worker_main(config_json: str) -> None:
    """A worker process (`python -m sweet_megatron.env.colbench_frontend.render '<config json>'`): one
    browser; one JSON line per page on stdin ({"html": ...}), one JSON line per result on stdout
    (the PNG base64-encoded), until stdin closes."""
    import base64
    import json
    import sys

    from playwright.sync_api import sync_playwright

    config = RenderConfig(**json.loads(config_json))
    css = tailwind_css_path().read_bytes()
    purger = TailwindPurger(css.decode()) if config.purge_css else None
    out = sys.stdout
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=config.chromium, args=chromium_args(config),
                                    headless=True, chromium_sandbox=False, timeout=config.startup_timeout_s * 1000)
        session = _Session(browser, config, purger, css)
        out.write(json.dumps({"ready": True}) + "\n")
        out.flush()
        for line in sys.stdin:
            result = session.render(json.loads(line)["html"])
            if result["png"] is not None:
                result["png"] = base64.b64encode(result["png"]).decode()
            out.write(json.dumps(result) + "\n")
            out.flush()
        session.close()
        browser.close()


# ---------------------------------------------------------------- in the caller


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (children first collected, then all killed)."""
    try:
        procs = _tree(psutil.Process(pid))
    except psutil.Error:
        return
    for p in reversed(procs):
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


class _Worker:
    """One worker process and its line-based pipes."""

    def __init__(self, config: RenderConfig):
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty browser never blocks
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sweet_megatron.env.colbench_frontend.render", json.dumps(asdict(config))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        self._buf = b""
        try:
            line = self.read_line(time.monotonic() + config.startup_timeout_s)
        except EOFError:
            line = None
        if line is None:
            self.kill()
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace")[-800:]
            raise RenderUnavailable(f"Chromium ({config.chromium}) did not start within {config.startup_timeout_s}s "
                                    f"under Playwright: {err.strip() or 'no output'}. Check it runs: "
                                    f"{config.chromium} --headless=new --no-sandbox --screenshot about:blank")

    def send(self, html: str) -> None:
        self.proc.stdin.write((json.dumps({"html": html}) + "\n").encode())
        self.proc.stdin.flush()

    def read_line(self, deadline: float, poll_s: float | None = None) -> bytes | None:
        """The next line of the worker's stdout, or None when nothing complete arrived by
        `deadline` (or within `poll_s`). EOFError when the worker's stdout closed."""
        fd = self.proc.stdout.fileno()
        until = deadline if poll_s is None else min(deadline, time.monotonic() + poll_s)
        while b"\n" not in self._buf:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                f.close()
            except OSError:
                pass

    def usage(self) -> tuple[int, float]:
        """(processes, resident MB) of the worker's whole tree."""
        procs = _tree(self.ps)
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return len(procs), rss / 2**20

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.kill()
        for f in (self.proc.stdout, self._stderr):
            f.close()


class BrowserPool:
    """`num_browsers` worker processes, each with one headless Chromium; see the module docstring."""

    def __init__(self, config: RenderConfig | None = None):
        config = config or RenderConfig()
        if config.chromium is None:
            config.chromium = find_chromium()
        if config.chromium is None or not os.path.isfile(config.chromium):
            raise RenderUnavailable("no Chromium found: install Debian's package (`apt-get install -y chromium`) "
                                    "or set SWEET_CHROMIUM to a Chromium binary")
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            raise RenderUnavailable("Playwright for Python is missing: `pip install playwright` "
                                    "(never `playwright install`: the system Chromium is used)") from None
        self.config = config
        tailwind_css_path()  # fail here, not in a worker, when the stylesheet is missing
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(config.num_browsers):
            self._idle.put(None)  # started on first use
        self.kills: dict[str, int] = {"timeout": 0, "memory": 0, "processes": 0, "crash": 0}

    def _render_with(self, worker: _Worker, html: str) -> tuple[RenderResult, bool]:
        """Render on `worker`; returns (result, worker still usable)."""
        cfg = self.config
        start = time.perf_counter()
        deadline = time.monotonic() + cfg.timeout_s + cfg.grace_s
        reason = None
        try:
            worker.send(html)
        except OSError:
            reason = "crash: the browser worker died"
        while reason is None:
            try:
                line = worker.read_line(deadline, poll_s=0.05)
            except (EOFError, OSError):
                reason = "crash: the browser worker died"
                break
            if line is not None:
                msg = json.loads(line)
                break
            num, mb = worker.usage()
            if num == 0:
                reason = "crash: the browser worker died"
            elif mb > cfg.memory_mb:
                reason = f"memory: the browser's processes held {mb:.0f} MB (limit memory_mb={cfg.memory_mb})"
            elif num > cfg.max_processes:
                reason = f"processes: the browser ran {num} processes (limit max_processes={cfg.max_processes})"
            elif time.monotonic() > deadline:
                reason = f"timeout: the page took longer than timeout_s={cfg.timeout_s} (+{cfg.grace_s}s grace)"
            if reason:
                break
        seconds = time.perf_counter() - start
        if reason:
            self.kills[reason.split(":")[0]] += 1
            worker.kill()
            return blank_result(cfg, reason, seconds), False
        if msg["png"] is None:
            return blank_result(cfg, msg["error"], seconds), True
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(msg["png"]))).convert("RGB"))
        boxes = [Box(x, y, w, h, tag, tuple(bg) if bg else None, tuple(fg), text)
                 for x, y, w, h, tag, bg, fg, text in msg["boxes"]]
        return RenderResult(image, msg["text"], boxes, msg["height"], None, seconds), True

    def render_one(self, html: str | None) -> RenderResult:
        """One page (None or empty: a blank result without starting a browser)."""
        if not html:
            return blank_result(self.config, "no page")
        worker = self._idle.get()
        try:
            if worker is None:
                worker = _Worker(self.config)
            result, usable = self._render_with(worker, html)
            if not usable:
                worker = None
            return result
        except BaseException:
            if worker is not None:
                worker.kill()
            worker = None
            raise
        finally:
            self._idle.put(worker)

    def render(self, htmls: list[str | None]) -> list[RenderResult]:
        """Pages in parallel over the pool; one result per page, in order."""
        if len(htmls) <= 1 or self.config.num_browsers == 1:
            return [self.render_one(h) for h in htmls]
        results: list[RenderResult | None] = [None] * len(htmls)
        errors: list[BaseException] = []
        jobs: queue.Queue[int] = queue.Queue()
        for i in range(len(htmls)):
            jobs.put(i)

        def run() -> None:
            while not errors:
                try:
                    i = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = self.render_one(htmls[i])
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                    errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(min(self.config.num_browsers, len(htmls)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results  # type: ignore[return-value]

    def close(self) -> None:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker is not None:
                worker.close()

    def __enter__(self) -> BrowserPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    worker_main(sys.argv[1])
