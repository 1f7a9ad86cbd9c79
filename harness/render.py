"""Open a report in headless Chromium: a screenshot, and a count of images that failed to load.

Debian's `chromium` package is used as is (browser downloads do not work on these machines),
with the flags that keep it off the network. The report page marks broken images on its `body`
once loaded; `--dump-dom` hands that back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
)


class RenderError(RuntimeError):
    """Chromium is missing or failed."""


@dataclass(frozen=True)
class Rendered:
    screenshot: Path
    images: int
    broken_images: int


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RenderError("chromium not found: apt-get install chromium")


def render(index: Path, screenshot: Path, width: int = 1200, height: int = 3200) -> Rendered:
    """Render `index` from disk; write `screenshot`; count the page's images and broken ones."""
    url = index.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="timerlab-chromium-") as profile:
        base = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
        dom = _run([*base, "--dump-dom", url])
        _run([*base, f"--window-size={width},{height}", f"--screenshot={screenshot}", url])
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    if images is None or broken is None:
        raise RenderError("the page did not report its images (did its script run?)")
    if not screenshot.exists():
        raise RenderError("chromium wrote no screenshot")
    return Rendered(screenshot, int(images.group(1)), int(broken.group(1)))


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError("chromium did not finish within 120 s") from None
    if done.returncode != 0:
        raise RenderError(f"chromium failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout
