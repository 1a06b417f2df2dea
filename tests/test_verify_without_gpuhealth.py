"""The README's "Verify without gpuhealth" steps, run as written: a JCS library and the openssl
command line check a signed report's signature, give the signer's fingerprint and the record
SHA-256 that the certificate and `gpuhealth verify` show, and refuse a tampered report.

The block is read from the README (the fenced block after <!-- verify-without-gpuhealth -->), so
the README and this test cannot drift apart. Without openssl the test fails: CI installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from simkit import REPO, invoke

from gpuhealth.certificate.keys import generate_key

MARKER = "<!-- verify-without-gpuhealth -->"


def readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER) + len(MARKER) :]
    found = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    assert found is not None, "no bash block after the marker"
    return found.group(1)


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A signed grade: its run folder, the seller's public key file, the key's fingerprint."""
    root = tmp_path_factory.mktemp("openssl")
    key = generate_key(root / "keys" / "signing.key")
    out = root / "run"
    result = invoke(
        "grade", "--demo", "--quick", "--quiet", "--out", str(out), "--key-file", str(key.path)
    )
    assert result.exit_code == 0, result.output
    pub = root / "seller.pub"
    pub.write_text(key.public_pem(), encoding="ascii")
    return out, pub, key.fingerprint


def run_steps(work: Path, report: Path, pub: Path, name: str) -> subprocess.CompletedProcess[str]:
    """The README block in a folder holding the report and seller.pub; the venv's python3 first
    on PATH (it has rfc8785, as `pip install rfc8785` would give)."""
    assert shutil.which("openssl"), "openssl is not installed (the README's test line installs it)"
    work.mkdir()
    shutil.copy(report, work / name)
    shutil.copy(pub, work / "seller.pub")
    script = readme_block().replace("REPORT=run.json", f"REPORT={name}", 1)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", ["run.json", "report.html"])
def test_the_readme_steps_verify_a_signed_report(
    signed_run: tuple[Path, Path, str], tmp_path: Path, name: str
) -> None:
    out, pub, fingerprint = signed_run
    done = run_steps(tmp_path / "work", out / name, pub, name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout
    assert f"the record names its signer {fingerprint}" in done.stdout
    lines = done.stdout.splitlines()
    assert fingerprint.removeprefix("SHA256:") in lines  # the fingerprint from seller.pub
    digest = next(line.split()[0] for line in lines if line.endswith("record.jcs"))
    # the same SHA-256 is on the certificate and in gpuhealth verify's answer
    assert f'record SHA-256 <span class="mono hash">{digest}</span>' in (
        out / "report.html"
    ).read_text(encoding="utf-8")
    answer = json.loads(invoke("verify", str(out / name), "--key", str(pub), "--json").stdout)
    assert answer["record_sha256"] == digest


@pytest.mark.parametrize("name", ["run.json", "report.html"])
def test_the_readme_steps_refuse_a_tampered_report(
    signed_run: tuple[Path, Path, str], tmp_path: Path, name: str
) -> None:
    out, pub, _ = signed_run
    text = (out / name).read_text(encoding="utf-8")
    tampered_text, count = re.subn(r'("letter": )"A"', r'\1"B"', text, count=1)
    assert count == 1
    tampered = tmp_path / name
    tampered.write_text(tampered_text, encoding="utf-8")
    done = run_steps(tmp_path / "work", tampered, pub, name)
    assert done.returncode != 0
    assert "Signature Verification Failure" in done.stdout + done.stderr


def test_the_readme_steps_refuse_another_sellers_key(
    signed_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out, _, _ = signed_run
    other = generate_key(tmp_path / "other" / "signing.key")
    pub = tmp_path / "other.pub"
    pub.write_text(other.public_pem(), encoding="ascii")
    done = run_steps(tmp_path / "work", out / "run.json", pub, "run.json")
    assert done.returncode != 0
    assert "Signature Verification Failure" in done.stdout + done.stderr
