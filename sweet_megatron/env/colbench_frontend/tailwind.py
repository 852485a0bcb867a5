"""The Tailwind 2.2.19 stylesheet the ColBench pages link, kept on disk so rendering never needs the
network.

Pages link `https://cdn.jsdelivr.net/npm/tailwindcss@2.2.19/dist/tailwind.min.css`; the renderer
answers that request (and any other URL naming `tailwind.min.css` or `tailwind.css`) with the
local copy. The copy is fetched once, at install time, by

    python -m sweet_megatron.env.colbench_frontend fetch-tailwind

which runs `npm pack tailwindcss@2.2.19` (the npm registry's tarball, checked against the
registry's published sha512 integrity) and stores `dist/tailwind.min.css` (2.9 MB, checked by
sha256) and the package's MIT licence under the cache directory. The stylesheet is not shipped
in this package: at 2.9 MB it would be the largest file of the wheel.

Where the renderer looks, first match wins: `$SWEET_TAILWIND_CSS` (a file), then
`$SWEET_CACHE_DIR/tailwindcss-2.2.19/tailwind.min.css`, then
`~/.cache/sweet-megatron/tailwindcss-2.2.19/tailwind.min.css`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

TAILWIND_VERSION = "2.2.19"
TAILWIND_SPEC = f"tailwindcss@{TAILWIND_VERSION}"
TARBALL_SHA512 = "6Ui7JSVtXadtTUo2NtkBBacobzWiQYVjYW0ZnKaP9S1ZCKQ0w7KVNz+YSDI/j7O7KCMHbOkz94ZMQhbT9pOqjw=="
"""The registry's `dist.integrity` of tailwindcss-2.2.19.tgz (`npm view tailwindcss@2.2.19 dist.integrity`)."""
CSS_SHA256 = "b6ad97402eddb903e7a5d7a73ee47a679204efbdda4521a391cbad9df509b932"
"""sha256 of package/dist/tailwind.min.css inside that tarball."""
FETCH_COMMAND = "python -m sweet_megatron.env.colbench_frontend fetch-tailwind"


class TailwindMissing(FileNotFoundError):
    """The local stylesheet is not there; the message says how to fetch it."""


def cache_dir() -> Path:
    root = os.environ.get("SWEET_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "sweet-megatron"
    return base / f"tailwindcss-{TAILWIND_VERSION}"


def tailwind_css_path() -> Path:
    """The local tailwind.min.css; raises TailwindMissing naming the fetch command."""
    env = os.environ.get("SWEET_TAILWIND_CSS")
    if env:
        path = Path(env)
        if not path.is_file():
            raise TailwindMissing(f"SWEET_TAILWIND_CSS={env}: no such file; unset it or run `{FETCH_COMMAND}`")
        return path
    path = cache_dir() / "tailwind.min.css"
    if not path.is_file():
        raise TailwindMissing(f"the Tailwind {TAILWIND_VERSION} stylesheet is not at {path}; fetch it once "
                              f"(needs npm and the registry) with `{FETCH_COMMAND}`, or set SWEET_TAILWIND_CSS "
                              "to a copy of tailwindcss@2.2.19/dist/tailwind.min.css")
    return path


def _sha512_b64(path: Path) -> str:
    return base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch_tailwind(dest: Path | None = None, npm: str = "npm") -> Path:
    """Install-time step: `npm pack tailwindcss@2.2.19`, verify the tarball and the stylesheet,
    store tailwind.min.css and LICENSE under `dest` (default cache_dir()). Returns the css path."""
    dest = dest or cache_dir()
    out = dest / "tailwind.min.css"
    if out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == CSS_SHA256:
        return out
    if shutil.which(npm) is None:
        raise RuntimeError(f"fetch-tailwind: `{npm}` not found; install Debian's `npm` package "
                           "or copy tailwind.min.css there by hand")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", TAILWIND_SPEC, "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"fetch-tailwind: `npm pack {TAILWIND_SPEC}` failed: {proc.stderr.strip()[-500:]}")
        tarball = Path(tmp) / f"tailwindcss-{TAILWIND_VERSION}.tgz"
        if _sha512_b64(tarball) != TARBALL_SHA512:
            raise RuntimeError(f"fetch-tailwind: {tarball.name} does not match the registry's integrity hash")
        with tarfile.open(tarball) as tar:
            css = tar.extractfile("package/dist/tailwind.min.css").read()
            licence = tar.extractfile("package/LICENSE").read()
        if hashlib.sha256(css).hexdigest() != CSS_SHA256:
            raise RuntimeError("fetch-tailwind: dist/tailwind.min.css does not match its pinned sha256")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "LICENSE").write_bytes(licence)
        tmp_out = dest / "tailwind.min.css.tmp"
        tmp_out.write_bytes(css)
        os.replace(tmp_out, out)
    return out


# ---------------------------------------------------------------- purge: the rules a page can use

_CANDIDATE = re.compile(r"""[^<>"'`\s]*[^<>"'`\s:]""")
"""Tailwind 2's own default content extractor: every run of characters that could be a class name."""
_SELECTOR_CLASS = re.compile(r"\.((?:\\[0-9a-fA-F]{1,6} ?|\\.|[A-Za-z0-9_-])+)")
_HEX_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6}) ?")
_CHAR_ESCAPE = re.compile(r"\\(.)")


def _unescape(name: str) -> str:
    return _CHAR_ESCAPE.sub(r"\1", _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name))


def _blocks(css: str, start: int = 0, end: int | None = None):
    """(prelude, body) of each top-level `prelude{body}` of css[start:end], comments dropped."""
    end = len(css) if end is None else end
    i = start
    while i < end:
        if css.startswith("/*", i):
            j = css.find("*/", i + 2)
            i = end if j < 0 else j + 2
            continue
        brace = css.find("{", i, end)
        if brace < 0:
            return
        prelude = css[i:brace].strip()
        depth, j, quote = 1, brace + 1, ""
        while j < end and depth:
            c = css[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            j += 1
        yield prelude, brace + 1, j - 1
        i = j


class TailwindPurger:
    """Cuts the 2.9 MB stylesheet down to the rules a page can use, as Tailwind's own `purge` does
    for production builds: a rule stays when, for some selector of its list, every class it names is
    a candidate token of the page's HTML (Tailwind 2's default extractor, scripts included); rules
    naming no class (the preflight reset, `*` variables) and @keyframes always stay; order (the
    cascade) is kept. Parsing the stylesheet once takes about a second; each page then costs
    milliseconds, and the browser parses kilobytes instead of megabytes."""

    def __init__(self, css: str):
        self.rules: list[tuple[str | None, str]] = []
        """(media prelude or None, rule text) in stylesheet order."""
        self.always: list[int] = []
        self.by_class: dict[str, list[int]] = {}
        self.needs: list[list[frozenset[str]]] = []
        for prelude, a, b in _blocks(css):
            if prelude.startswith("@media"):
                for inner, c, d in _blocks(css, a, b):
                    self._add(prelude, inner, css[c:d])
            elif prelude.startswith("@"):
                self.always.append(len(self.rules))
                self.rules.append((None, f"{prelude}{{{css[a:b]}}}"))
                self.needs.append([])
            else:
                self._add(None, prelude, css[a:b])

    def _add(self, media: str | None, selector: str, body: str) -> None:
        idx = len(self.rules)
        self.rules.append((media, f"{selector}{{{body}}}"))
        parts = [frozenset(_unescape(m) for m in _SELECTOR_CLASS.findall(part)) for part in selector.split(",")]
        self.needs.append(parts)
        if any(not p for p in parts):
            self.always.append(idx)
            return
        for cls in set().union(*parts):
            self.by_class.setdefault(cls, []).append(idx)

    def purge(self, html: str) -> str:
        tokens = set(_CANDIDATE.findall(html))
        keep = set(self.always)
        for tok in tokens:
            for idx in self.by_class.get(tok, ()):
                if idx not in keep and any(p <= tokens for p in self.needs[idx]):
                    keep.add(idx)
        out, media_open = [], None
        for idx in sorted(keep):
            media, text = self.rules[idx]
            if media != media_open:
                if media_open is not None:
                    out.append("}")
                if media is not None:
                    out.append(media + "{")
                media_open = media
            out.append(text)
        if media_open is not None:
            out.append("}")
        return "".join(out)
