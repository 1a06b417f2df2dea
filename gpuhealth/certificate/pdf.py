"""PDF export of a certificate, printed by a headless Chromium (an optional extra).

gpuhealth ships no PDF engine: the browser that lays the certificate out on screen also prints it,
so the PDF is the page a person sees, with the certificate's own print styles (@page margins, page
breaks, grayscale-safe grade box). The browser is started with flags that keep it from reaching
the network (no DNS at all, no background services, no sync or updates) and with a throw-away
profile; the certificate itself loads nothing either (inline CSS and SVG, a Content-Security-Policy
of default-src 'none').

    render_pdf(Path("report.html"), Path("report.pdf"))            # the browser's default paper
    render_pdf(Path("report.html"), Path("report.pdf"), paper="A4")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from gpuhealth.atomicfile import write_atomic
from gpuhealth.certificate.report import render
from gpuhealth.datafiles import read_text_file
from gpuhealth.errors import EnvironmentUnusable, InputError
from gpuhealth.models import RunRecord

Paper = Literal["A4", "Letter"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Looked up on PATH in this order; GPUHEALTH_BROWSER (a path or a name) comes first."""

BROWSER_ENV = "GPUHEALTH_BROWSER"

SAFE_FLAGS: tuple[str, ...] = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
"""Headless, nothing from the network: every host name fails to resolve, so not even the browser's
own background services can send a request. A fresh --user-data-dir is added per run."""

INSTALL_HINT = (
    "PDF export prints the certificate with a headless Chromium: install one "
    "(Debian/Ubuntu: apt install chromium) or name it in GPUHEALTH_BROWSER; "
    "report.html itself prints from any browser"
)

_PAPER_CSS: dict[str, str] = {"A4": "@page { size: A4; }", "Letter": "@page { size: letter; }"}


def find_browser() -> str:
    """The Chromium to print with: GPUHEALTH_BROWSER, else the first of BROWSERS on PATH."""
    chosen = os.environ.get(BROWSER_ENV, "").strip()
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise EnvironmentUnusable(
                f"{BROWSER_ENV}={chosen!r} is not an executable browser", INSTALL_HINT
            )
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise EnvironmentUnusable(
        f"no headless browser found on PATH (looked for {', '.join(BROWSERS)})", INSTALL_HINT
    )


def browser_command(browser: str, profile_dir: Path, *extra: str) -> list[str]:
    """The browser's argument list: SAFE_FLAGS, a throw-away profile, then the caller's flags.

    Chromium refuses to run as root with its sandbox on (containers, CI): only then is it off.
    The certificate it opens is gpuhealth's own, escaped and with a CSP that allows no loads.
    """
    command = [browser, *SAFE_FLAGS, f"--user-data-dir={profile_dir}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--no-sandbox")
    command.extend(extra)
    return command


def render_pdf(
    html_path: Path,
    pdf_path: Path,
    *,
    paper: Paper | None = None,
    browser: str | None = None,
    timeout_s: float = 120.0,
) -> Path:
    """Print an HTML certificate to PDF with a headless Chromium; returns pdf_path.

    paper None keeps the certificate's `@page { size: auto }` (the browser's default paper);
    "A4" or "Letter" print a copy with that page size. The PDF appears whole or not at all.
    Raises EnvironmentUnusable when no browser is found or the browser fails, InputError when
    html_path cannot be read.
    """
    if not html_path.is_file():
        raise InputError(str(html_path), None, "no such file (expected a gpuhealth report.html)")
    executable = browser or find_browser()
    with tempfile.TemporaryDirectory(prefix="gpuhealth-pdf-") as tmp:
        work = Path(tmp)
        source = html_path.resolve()
        if paper is not None:
            source = work / "certificate.html"
            source.write_text(_with_paper(read_text_file(html_path), paper), encoding="utf-8")
        printed = work / "certificate.pdf"
        command = browser_command(
            executable,
            work / "profile",
            f"--print-to-pdf={printed}",
            "--no-pdf-header-footer",
            "--print-to-pdf-no-header",  # the same, as older Chromium spells it
            source.as_uri(),
        )
        _run(command, timeout_s)
        if not printed.is_file() or not printed.read_bytes().startswith(b"%PDF"):
            raise EnvironmentUnusable(
                f"{Path(executable).name} wrote no PDF for {html_path}", INSTALL_HINT
            )
        _atomic_copy(printed, pdf_path)
    return pdf_path


def record_to_pdf(record: RunRecord, pdf_path: Path, *, paper: Paper | None = None) -> Path:
    """Render a record's certificate and print it to pdf_path (what `--format pdf` calls)."""
    with tempfile.TemporaryDirectory(prefix="gpuhealth-pdf-") as tmp:
        html_path = Path(tmp) / "report.html"
        html_path.write_text(render(record, "html"), encoding="utf-8")
        return render_pdf(html_path, pdf_path, paper=paper)


def _with_paper(html: str, paper: Paper) -> str:
    """The certificate with a fixed page size, added at the end of its (only) style element."""
    if "</style>" not in html:
        raise InputError("report.html", None, "no <style> element: not a gpuhealth certificate")
    return html.replace("</style>", _PAPER_CSS[paper] + "\n</style>", 1)


def _run(command: Sequence[str], timeout_s: float) -> None:
    name = Path(command[0]).name
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentUnusable(f"{name} did not finish printing in {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise EnvironmentUnusable(f"cannot start {command[0]} ({exc})", INSTALL_HINT) from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise EnvironmentUnusable(
            f"{name} failed with exit code {done.returncode}", lines[-1] if lines else None
        )


def _atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, source.read_bytes())
