"""Render an HTML report in headless Chromium: a screenshot, and whether every image loaded.

Used by the end-to-end test to check that a report a colleague opens shows its
plots. Chromium comes from Debian's `chromium` package (scripts/install-chromium.sh).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psrq.errors import PsrqError

# Flags for a closed network: without the background-networking ones Chromium keeps trying
# to reach Google's services and logs a stream of refused connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

# Appended to a copy of the page: after load, write how many images decoded into the title
# of the DOM dump, so one `--dump-dom` call answers "are there broken images?".
_PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken-images', String(broken));
});
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class RenderResult:
    screenshot: Path
    n_images: int
    n_broken_images: int


def _run(cmd: list[str], timeout: int) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PsrqError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def render_html(
    html_path: Path, screenshot: Path, *, width: int = 1280, height: int = 2400, timeout: int = 120
) -> RenderResult:
    """Screenshot `html_path` and count its images that failed to decode."""
    import re

    chromium = find_chromium()
    if chromium is None:
        raise PsrqError(
            "chromium is not installed (Debian package 'chromium'; see scripts/install-chromium.sh)"
        )
    html_path = Path(html_path).resolve()
    with tempfile.TemporaryDirectory() as profile:
        probe_page = Path(profile) / "page.html"
        probe_page.write_text(html_path.read_text() + _PROBE)
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/ud"]
        _run(
            [
                *base,
                f"--window-size={width},{height}",
                f"--screenshot={Path(screenshot).resolve()}",
                html_path.as_uri(),
            ],
            timeout,
        )
        dom = _run(
            [*base, "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()], timeout
        )
    n_img = re.search(r'data-images="(\d+)"', dom)
    n_broken = re.search(r'data-broken-images="(\d+)"', dom)
    if not (n_img and n_broken):
        raise PsrqError("could not read the image count back from chromium's DOM dump")
    return RenderResult(Path(screenshot), int(n_img.group(1)), int(n_broken.group(1)))
