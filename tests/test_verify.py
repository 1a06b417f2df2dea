"""gpuhealth verify: untouched reports verify; any changed byte of the signed record, another
signer, an edited grade, no signature or no report at all each give their exit code and a reason;
--recheck on the simulated card finds another card, fewer remapped rows and a slower memory.

One simulated card is graded once (--quick) and signed with a key under tmp_path; every test gets
its own settings folder, so pinned keys never leak between tests or into ~/.config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from simkit import card_toml, invoke

import gpuhealth.verify as verify_module
from gpuhealth.errors import EXIT_BAD_CARD, EXIT_OK, EXIT_UNSIGNED, EXIT_USAGE
from gpuhealth.keys import SigningKey, generate_key
from gpuhealth.models import Grade, RunRecord, record_from_json
from gpuhealth.report import write_reports
from gpuhealth.signing import sign_record, unsigned
from gpuhealth.verify import verify_report

SERIAL = "SIM-VERIFY-A"
REMAPPED = "remapped_rows = { correctable = 2 }"  # graded B (rows remapped), not A
FLIP_STRIDE = 97  # every 97th letter or digit inside a value
MAX_FLIPS = 80  # per file: keeps the loop under a second


class Signed:
    def __init__(self, root: Path, key: SigningKey, other: SigningKey, card: Path) -> None:
        self.root, self.key, self.other, self.card = root, key, other, card

    @property
    def run_json(self) -> Path:
        return self.root / "run" / "run.json"

    @property
    def html(self) -> Path:
        return self.root / "run" / "report.html"

    def record(self) -> RunRecord:
        return record_from_json(self.run_json.read_text(encoding="utf-8"))

    def pub(self, key: SigningKey) -> Path:
        path = self.root / f"{key.fingerprint[7:15]}.pub"
        path.write_text(key.public_pem(), encoding="ascii")
        return path

    def write(self, record: RunRecord, name: str) -> Path:
        folder = self.root / name
        write_reports(record, folder)
        return folder / "run.json"

    def card_spec(self, faults: str = REMAPPED, serial: str = SERIAL, name: str = "a") -> Path:
        path = self.root / f"card-{name}.toml"
        path.write_text(card_toml(faults, header=f'serial = "{serial}"'), encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    root = tmp_path_factory.mktemp("verify")
    key = generate_key(root / "keys" / "signing.key")
    other = generate_key(root / "keys" / "other.key")
    holder = Signed(root, key, other, Path())
    holder.card = holder.card_spec()
    out = root / "run"
    result = invoke(
        "grade", "--quick", "--quiet", "--sim-card", str(holder.card), "--key-file", str(key.path),
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert f"signed 1 report(s) with key {key.fingerprint}" in result.stderr
    return holder


@pytest.fixture(autouse=True)
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GPUHEALTH_KEY_FILE", raising=False)


def verify(*args: str) -> tuple[int, str]:
    result = invoke("verify", *args)
    return result.exit_code, result.stdout


def check_lines(stdout: str) -> dict[str, str]:
    """check name -> status, from the text output."""
    found = re.findall(r"^  (\w+)\s+(pass|fail|skipped)\s", stdout, re.MULTILINE)
    return dict(found)


# --- valid reports -------------------------------------------------------------------------------


def test_all_three_reports_carry_the_signature(signed: Signed) -> None:
    record = signed.record()
    assert (
        record.signature is not None and record.signature.key_fingerprint == signed.key.fingerprint
    )
    assert record.grade is not None and record.grade.letter == "B"
    for name in ("report.html", "report.md"):
        text = (signed.run_json.parent / name).read_text(encoding="utf-8")
        assert signed.key.fingerprint in text


@pytest.mark.parametrize("which", ["run_json", "html"])
def test_untouched_report_verifies_against_the_given_key(signed: Signed, which: str) -> None:
    code, out = verify(str(getattr(signed, which)), "--key", str(signed.pub(signed.key)))
    assert code == EXIT_OK, out
    assert set(check_lines(out).values()) == {"pass"}, out
    assert out.splitlines()[-1].startswith("VALID: ")


def test_untouched_report_without_a_key_says_the_signer_was_not_checked(signed: Signed) -> None:
    code, out = verify(str(signed.html))
    assert code == EXIT_OK
    assert check_lines(out)["signer"] == "skipped" and "signer not pinned" in out
    assert "signer not checked" in out.splitlines()[-1]
    assert "not the page's visible text" in out  # the HTML: only the embedded record is signed


def test_pinned_key_is_the_signer_check(signed: Signed) -> None:
    assert invoke("keys", "pin", str(signed.pub(signed.key))).exit_code == EXIT_OK
    code, out = verify(str(signed.run_json))
    assert code == EXIT_OK and check_lines(out)["signer"] == "pass" and "pinned" in out


def test_json_output(signed: Signed) -> None:
    code, out = verify(str(signed.run_json), "--json")
    data = json.loads(out)
    assert code == EXIT_OK and data["exit_code"] == EXIT_OK
    assert data["signer"] == signed.key.fingerprint and data["grade"] == "B"
    assert {c["name"]: c["status"] for c in data["checks"]} == {
        "readable": "pass",
        "schema": "pass",
        "signed": "pass",
        "signature": "pass",
        "signer": "skipped",
        "consistency": "pass",
        "judgement": "pass",
    }


# --- another signer, an edited grade, unsigned, not a report -------------------------------------


def test_another_signer_fails_against_the_given_and_the_pinned_key(signed: Signed) -> None:
    code, out = verify(str(signed.run_json), "--key", signed.other.fingerprint)
    assert code == EXIT_BAD_CARD and check_lines(out)["signer"] == "fail"
    assert f"signed by {signed.key.fingerprint}, not by the given key" in out
    assert invoke("keys", "pin", signed.other.public_b64).exit_code == EXIT_OK
    code, out = verify(str(signed.html))
    assert code == EXIT_BAD_CARD and "not one of the 1 pinned key(s)" in out


def test_grade_edited_to_a_and_signed_again_fails_consistency(signed: Signed) -> None:
    record = signed.record()
    assert record.grade is not None
    edited = replace(record, grade=replace(record.grade, letter="A"))
    path = signed.write(sign_record(edited, signed.key), "edited")
    for report in (path, path.with_name("report.html")):
        code, out = verify(str(report), "--key", signed.key.fingerprint)
        checks = check_lines(out)
        assert code == EXIT_BAD_CARD, out
        assert checks["signature"] == "pass" and checks["signer"] == "pass"
        assert checks["consistency"] == "fail" and checks["judgement"] == "fail"
        assert "the record says grade A" in out and "give B" in out


def test_reasons_edited_and_signed_again_fail_consistency(signed: Signed) -> None:
    record = signed.record()
    assert record.grade is not None
    edited = replace(record, grade=Grade("B", record.grade.disposition, (), record.grade.policy,
                                         record.grade.policy_sha256))  # fmt: skip
    code, out = verify(str(signed.write(sign_record(edited, signed.key), "reasons")))
    assert code == EXIT_BAD_CARD and check_lines(out)["consistency"] == "fail"


def test_unknown_policy_is_skipped_not_failed(signed: Signed) -> None:
    record = signed.record()
    assert record.grade is not None
    other = replace(record, grade=replace(record.grade, policy_sha256="0" * 64, policy="shop v9"))
    code, out = verify(str(signed.write(sign_record(other, signed.key), "policy")))
    assert code == EXIT_OK
    assert check_lines(out)["consistency"] == "skipped" and "policy not available" in out


def test_unsigned_report_is_exit_4(signed: Signed) -> None:
    path = signed.write(unsigned(signed.record()), "unsigned")
    for report in (path, path.with_name("report.html")):
        code, out = verify(str(report))
        assert code == EXIT_UNSIGNED, out
        assert check_lines(out)["signed"] == "fail" and out.splitlines()[-1].startswith("UNSIGNED")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.txt", "just some text\n", "not a gpuhealth report"),
        ("broken.json", '{"schema_version": 1,', "not JSON"),
        ("other.json", '{"hello": "world"}', "not a gpuhealth run record"),
        ("list.json", "[1, 2]", "not a JSON object"),
        ("page.html", "<html><body><p>grade A</p></body></html>", "no"),
        ("future.json", '{"schema_version": 99, "run_id": "x"}', "schema_version 99"),
        ("binary.json", b"\xff\xfe\x00garbage", "not UTF-8"),
        ("missing.json", None, "cannot read"),
    ],
)
def test_not_a_report_is_exit_2(
    tmp_path: Path, name: str, content: str | bytes | None, words: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    code, out = verify(str(path))
    assert code == EXIT_USAGE, out
    assert words in out and out.splitlines()[-1].startswith("UNREADABLE")


def test_two_embedded_records_are_unreadable(signed: Signed, tmp_path: Path) -> None:
    html = signed.html.read_text(encoding="utf-8")
    start = html.index("<script")
    end = html.index("</script>", start) + len("</script>")
    doubled = tmp_path / "double.html"
    doubled.write_text(html[:end] + html[start:end] + html[end:], encoding="utf-8")
    code, out = verify(str(doubled))
    assert code == EXIT_USAGE and "2 embedded run records" in out


def test_the_visible_page_is_not_what_is_signed(signed: Signed, tmp_path: Path) -> None:
    """Documented behaviour: only the embedded record is checked; the verdict to trust is the
    verifier's, not what the page shows."""
    html = signed.html.read_text(encoding="utf-8")
    changed = tmp_path / "report.html"
    changed.write_text(html.replace("<body", "<!-- a seller's note --><body", 1), encoding="utf-8")
    assert verify(str(changed))[0] == EXIT_OK


# --- every byte of the signed content ------------------------------------------------------------


def value_positions(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of ASCII letters and digits inside JSON values (strings that are not object keys,
    numbers, true/false/null) between start and end."""
    end = len(text) if end is None else end
    found: list[int] = []
    i = start
    while i < end:
        if text[i] == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            k = j + 1
            while text[k] in " \t\r\n":
                k += 1
            if text[k] != ":":  # a key is followed by a colon
                found.extend(p for p in range(i + 1, j) if text[p].isascii() and text[p].isalnum())
            i = j + 1
        else:
            if text[i].isascii() and text[i].isalnum():
                found.append(i)
            i += 1
    return found


def flipped(text: str, at: int) -> str:
    c = text[at]
    new = str((int(c) + 1) % 10) if c.isdigit() else chr(ord(c) - 1 if c in "zZ" else ord(c) + 1)
    return text[:at] + new + text[at + 1 :]


def sample(positions: list[int]) -> list[int]:
    every = positions[::FLIP_STRIDE]
    return every[:: max(1, len(every) // MAX_FLIPS)]


def assert_every_flip_fails(
    path: Path, text: str, positions: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the grade's consistency is beside the point here (and the slow part): integrity is checked
    monkeypatch.setattr(verify_module, "_consistency_checks", lambda record: [])
    assert len(positions) > 50
    for at in positions:
        path.write_text(flipped(text, at), encoding="utf-8")
        result = verify_report(path)
        failed = [c for c in result.checks if c.status == "fail" and c.name != "signed"]
        context = text[max(0, at - 30) : at + 10]
        assert result.exit_code in (EXIT_BAD_CARD, EXIT_USAGE), (
            f"accepted a flip at {at}: {context}"
        )
        assert failed and failed[0].detail, context


def test_any_changed_value_byte_of_run_json_fails(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = signed.run_json.read_text(encoding="utf-8")
    # a sample of the whole record, and always some of the signature block itself (its key,
    # fingerprint and time are signed too): a stride alone may step over the short block
    block = text.rfind('"signature"')
    positions = sample(value_positions(text)) + value_positions(text, block)[::7][:12]
    assert any(p > block for p in positions)
    assert_every_flip_fails(tmp_path / "run.json", text, positions, monkeypatch)


def test_any_changed_value_byte_of_the_embedded_record_fails(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = signed.html.read_text(encoding="utf-8")
    opening = re.search(r'<script[^>]*id="gpuhealth-run-record"[^>]*>', text)
    assert opening is not None
    end = text.index("</script>", opening.end())
    positions = sample(value_positions(text, opening.end(), end))
    assert_every_flip_fails(tmp_path / "report.html", text, positions, monkeypatch)


def test_a_few_flips_through_the_command_line(signed: Signed, tmp_path: Path) -> None:
    text = signed.run_json.read_text(encoding="utf-8")
    path = tmp_path / "run.json"
    for at in value_positions(text)[1000::4000][:5]:
        path.write_text(flipped(text, at), encoding="utf-8")
        code, out = verify(str(path))
        assert (code in (EXIT_BAD_CARD, EXIT_USAGE) and "INVALID" in out) or "UNREADABLE" in out


# --- --recheck on the (simulated) card -----------------------------------------------------------


@pytest.fixture
def recheck(signed: Signed) -> Callable[..., tuple[int, str]]:
    def run(faults: str = REMAPPED, serial: str = SERIAL, name: str = "again") -> tuple[int, str]:
        card = signed.card_spec(faults, serial, name)
        return verify(str(signed.run_json), "--key", signed.key.fingerprint, "--recheck",
                      "--sim-card", str(card))  # fmt: skip

    return run


def test_recheck_on_the_same_card_is_consistent(recheck: Callable[..., tuple[int, str]]) -> None:
    code, out = recheck()
    checks = check_lines(out)
    assert code == EXIT_OK, out
    assert checks["identity"] == checks["counters"] == checks["remeasure"] == "pass"
    assert "metric" in out and "bandwidth.triad_gbs" in out and "gemm.fp32_tflops" in out
    assert out.splitlines()[-1].startswith("RECHECK CONSISTENT")


def test_recheck_on_another_card_fails_on_identity(recheck: Callable[..., tuple[int, str]]) -> None:
    code, out = recheck(serial="SIM-VERIFY-B", name="b")
    assert code == EXIT_BAD_CARD
    assert check_lines(out)["identity"] == "fail" and "another card" in out
    assert check_lines(out)["remeasure"] == "skipped"


def test_recheck_with_slower_memory_fails_the_remeasurement(
    recheck: Callable[..., tuple[int, str]],
) -> None:
    code, out = recheck(REMAPPED + "\nbandwidth_scale = 0.8", name="slow")
    checks = check_lines(out)
    assert code == EXIT_BAD_CARD
    assert checks["identity"] == checks["counters"] == "pass" and checks["remeasure"] == "fail"
    assert re.search(r"bandwidth\.copy_gbs .* 0\.800 .* lower", out)
    assert re.search(r"gemm\.fp16_tflops .* consistent", out)
    assert out.splitlines()[-1].startswith("RECHECK NOT CONSISTENT")


def test_recheck_with_fewer_remapped_rows_fails_the_counters(
    recheck: Callable[..., tuple[int, str]],
) -> None:
    code, out = recheck("remapped_rows = { correctable = 1 }", name="reset")
    assert code == EXIT_BAD_CARD
    assert check_lines(out)["counters"] == "fail" and "went down from 2 to 1" in out


def test_recheck_with_more_remapped_rows_fails_the_counters(
    recheck: Callable[..., tuple[int, str]],
) -> None:
    code, out = recheck("remapped_rows = { correctable = 2, pending = true }", name="worse")
    assert code == EXIT_BAD_CARD and "row remapping pending is set now" in out


def test_backend_options_need_recheck(signed: Signed) -> None:
    result = invoke("verify", str(signed.run_json), "--sim-card", str(signed.card))
    assert result.exit_code == EXIT_USAGE and "--recheck" in result.stderr
