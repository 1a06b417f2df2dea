"""gpuhealth verify: the answer is "not proven" unless every check was made and held.

A real card's record (tests/data/runs, judged by this version) signed with a test key is VALID
(exit 0) against the given or pinned key; each state that is not proven has its own exit code and
first line; any changed byte of the signed record fails; --recheck on the simulated card.
The attacks of a dishonest seller, one test per class, are in tests/test_attacks.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from simkit import card_toml, invoke
from verifykit import (
    check_lines,
    first_line,
    load,
    real_record,
    resigned_data,
    verify,
    verify_json,
    write_signed,
)

import gpuhealth.certificate.verify as verify_module
from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.keys import SigningKey, generate_key
from gpuhealth.certificate.rejudge import Rejudged
from gpuhealth.certificate.verify import verify_report
from gpuhealth.errors import (
    EXIT_BAD_CARD,
    EXIT_NOT_JUDGEABLE,
    EXIT_OK,
    EXIT_SIGNER_UNTRUSTED,
    EXIT_SIMULATED,
    EXIT_UNSIGNED,
    EXIT_USAGE,
    EXIT_VERSION_UNCHECKABLE,
)

SERIAL = "SIM-VERIFY-A"
REMAPPED = "remapped_rows = { correctable = 2 }"  # graded B (rows remapped), not A
FLIP_STRIDE = 97  # every 97th letter or digit inside a value
MAX_FLIPS = 80  # per file: keeps the loop under a second
ALL_PASS = {
    "readable",
    "version",
    "schema",
    "signed",
    "signature",
    "signer",
    "evidence",
    "rules",
    "judgement",
    "shipped",
    "card",
}


class Keys:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.key: SigningKey = generate_key(root / "keys" / "signing.key")
        self.other: SigningKey = generate_key(root / "other-keys" / "signing.key")

    def pub(self, key: SigningKey) -> Path:
        path = self.root / f"{key.fingerprint[7:15]}.pub"
        path.write_text(key.public_pem(), encoding="ascii")
        return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("verify-keys"))


@pytest.fixture(scope="module")
def real(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run.json of a real H100's record, signed; report.html beside it."""
    return write_signed(real_record(), keys.key, tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def sim(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run.json of a simulated H100 with two remapped rows (grade B), graded and signed."""
    root = tmp_path_factory.mktemp("sim")
    card = root / "card.toml"
    card.write_text(card_toml(REMAPPED, header=f'serial = "{SERIAL}"'), encoding="utf-8")
    result = invoke(
        "grade", "--quick", "--quiet", "--sim-card", str(card), "--key-file", str(keys.key.path),
        "--out", str(root / "run"),
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert f"signed 1 report(s) with key {keys.key.fingerprint}" in result.stderr
    return root / "run" / "run.json"


@pytest.fixture(autouse=True)
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GPUHEALTH_KEY_FILE", raising=False)


# --- VALID: a real card, every check made and passed ---------------------------------------------


@pytest.mark.parametrize("name", ["run.json", "report.html"])
def test_a_real_cards_report_is_valid_against_the_given_key(
    real: Path, keys: Keys, name: str
) -> None:
    code, out = verify(str(real.with_name(name)), "--key", str(keys.pub(keys.key)))
    assert code == EXIT_OK, out
    assert first_line(out).startswith("VALID: grade B for NVIDIA H100 80GB HBM3"), out
    checks = check_lines(out)
    assert {n for n, s in checks.items() if s == "pass"} == ALL_PASS | (
        {"page"} if name == "report.html" else set()
    ), out
    assert checks["page"] == ("pass" if name == "report.html" else "n/a")
    assert "what to do" not in out


def test_a_pinned_key_is_the_signer_check(real: Path, keys: Keys) -> None:
    assert invoke("keys", "pin", str(keys.pub(keys.key))).exit_code == EXIT_OK
    code, out = verify(str(real))
    assert code == EXIT_OK and check_lines(out)["signer"] == "pass" and "pinned key" in out


def test_json_output(real: Path, keys: Keys) -> None:
    code, data = verify_json(str(real), "--key", keys.key.fingerprint)
    assert code == EXIT_OK and data["exit_code"] == EXIT_OK
    assert data["signer"] == keys.key.fingerprint and data["grade"] == "B"
    assert data["backend"] == "cuda" and data["simulated"] is False
    assert isinstance(data["record_sha256"], str) and len(data["record_sha256"]) == 64
    checks = data["checks"]
    assert isinstance(checks, list)
    assert {c["name"]: c["status"] for c in checks} == dict.fromkeys(ALL_PASS, "pass") | {
        "page": "n/a"
    }


# --- not proven: each state its own exit code and first line -------------------------------------


def test_a_simulated_card_is_named_first_and_never_plain_valid(sim: Path, keys: Keys) -> None:
    code, out = verify(str(sim), "--key", keys.key.fingerprint)
    assert code == EXIT_SIMULATED, out
    assert first_line(out).startswith("SIMULATED CARD, NOT A GPU: grade B"), out
    assert "VALID" not in first_line(out)
    assert check_lines(out)["card"] == "unproven"
    code, data = verify_json(str(sim), "--key", keys.key.fingerprint)
    assert code == EXIT_SIMULATED and data["backend"] == "sim" and data["simulated"] is True


def test_no_key_given_and_none_pinned_is_not_proven(real: Path) -> None:
    code, out = verify(str(real.with_name("report.html")))
    assert code == EXIT_SIGNER_UNTRUSTED, out
    assert first_line(out).startswith("NOT PROVEN (signer not trusted): signer: signed by SHA256:")
    assert "no key was given (--key) or pinned" in first_line(out)
    assert out.splitlines()[1].startswith("what to do: get the seller's public key")


def test_a_signer_that_is_not_pinned_is_not_proven(real: Path, keys: Keys) -> None:
    assert invoke("keys", "pin", keys.other.public_b64).exit_code == EXIT_OK
    code, out = verify(str(real))
    assert code == EXIT_SIGNER_UNTRUSTED and "not one of the 1 pinned key(s)" in out


def test_another_signer_than_the_given_key_is_invalid(real: Path, keys: Keys) -> None:
    code, out = verify(str(real), "--key", keys.other.fingerprint)
    assert code == EXIT_BAD_CARD and check_lines(out)["signer"] == "fail"
    assert first_line(out).startswith(f"INVALID: signer: signed by {keys.key.fingerprint}, not by")


def test_an_unsigned_report_is_exit_4(tmp_path: Path) -> None:
    path = write_signed(real_record(), None, tmp_path / "unsigned")
    for report in (path, path.with_name("report.html")):
        code, out = verify(str(report))
        assert code == EXIT_UNSIGNED, out
        assert first_line(out).startswith("NOT PROVEN (unsigned): signed: no signature")
        assert check_lines(out)["signed"] == "unproven"


def test_a_record_never_judged_is_not_judgeable(tmp_path: Path, keys: Keys) -> None:
    from dataclasses import replace

    bare = replace(real_record(), analysis=None, grade=None, rules=None)
    path = write_signed(bare, keys.key, tmp_path / "bare")
    code, out = verify(str(path), "--key", keys.key.fingerprint)
    assert code == EXIT_NOT_JUDGEABLE, out
    assert "never judged" in first_line(out)


def test_a_newer_schema_says_update_gpuhealth(real: Path, keys: Keys, tmp_path: Path) -> None:
    data = json.loads(real.read_text(encoding="utf-8"))
    data["schema_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(resigned_data(data, keys.key)), encoding="utf-8")
    code, out = verify(str(path), "--key", keys.key.fingerprint)
    assert code == EXIT_VERSION_UNCHECKABLE, out
    assert "written by a newer gpuhealth" in first_line(out)
    assert "update gpuhealth" in out.splitlines()[1]


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("empty.json", "", "not a gpuhealth report"),
        ("broken.json", '{"schema_version": 1,', "not JSON"),
        ("list.json", "[1, 2]", "not a JSON object"),
        ("other.json", '{"hello": "world"}', "not a gpuhealth run record"),
        ("dupe.json", '{"schema_version": 2, "schema_version": 2}', "duplicate key"),
        ("deep.json", "[" * 100000 + "]" * 100000, "not a valid record"),
        ("page.html", "<html><body>hello</body></html>", "not a gpuhealth report"),
        ("binary.json", "\udcff", "not UTF-8"),
    ],
)
def test_not_a_report_is_exit_2(tmp_path: Path, name: str, content: str, why: str) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    code, out = verify(str(path))
    assert code == EXIT_USAGE, out
    assert first_line(out).startswith("UNREADABLE") and why in first_line(out)


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    code, out = verify(str(tmp_path / "nowhere.json"))
    assert code == EXIT_USAGE and "cannot read" in first_line(out)


def test_two_embedded_records_are_unreadable(real: Path, tmp_path: Path) -> None:
    html = real.with_name("report.html").read_text(encoding="utf-8")
    start = html.index('<script type="application/json"')
    end = html.index("</script>", start) + len("</script>")
    doubled = tmp_path / "double.html"
    doubled.write_text(html[:end] + html[start:end] + html[end:], encoding="utf-8")
    code, out = verify(str(doubled))
    assert code == EXIT_USAGE and "2 embedded run records" in out


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
    # judging again and rendering the page are beside the point here (and the slow part):
    # integrity is checked
    monkeypatch.setattr(verify_module, "rejudge", lambda record: Rejudged(()))
    monkeypatch.setattr(verify_module, "page_check", lambda page, record: Check("page", "n/a", ""))
    assert len(positions) > 50
    original = json.loads(_record_text(text))
    for at in positions:
        changed = flipped(text, at)
        if _same_record(changed, original):
            continue  # a 17th digit that rounds to the same double: the same record
        path.write_text(changed, encoding="utf-8")
        result = verify_report(path)
        failed = [c for c in result.checks if c.status == "fail"]
        context = text[max(0, at - 30) : at + 10]
        assert result.exit_code in (EXIT_BAD_CARD, EXIT_USAGE), (
            f"accepted a flip at {at}: {context}"
        )
        assert failed and failed[0].detail, context


def _same_record(text: str, original: object) -> bool:
    try:
        return bool(json.loads(_record_text(text)) == original)
    except json.JSONDecodeError:
        return False


def _record_text(text: str) -> str:
    """The record's JSON: the file itself, or the record a page embeds."""
    found = re.search(r'id="gpuhealth-run-record">(.*?)</script>', text, re.DOTALL)
    return found.group(1) if found else text


def test_any_changed_value_byte_of_run_json_fails(
    real: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = real.read_text(encoding="utf-8")
    # a sample of the whole record, and always some of the signature block itself (its key,
    # fingerprint and time are signed too): a stride alone may step over the short block
    block = text.rfind('"signature"')
    positions = sample(value_positions(text)) + value_positions(text, block)[::7][:12]
    assert any(p > block for p in positions)
    assert_every_flip_fails(tmp_path / "run.json", text, positions, monkeypatch)


def test_any_changed_value_byte_of_the_embedded_record_fails(
    real: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = real.with_name("report.html").read_text(encoding="utf-8")
    opening = re.search(r'<script[^>]*id="gpuhealth-run-record"[^>]*>', text)
    assert opening is not None
    end = text.index("</script>", opening.end())
    positions = sample(value_positions(text, opening.end(), end))
    assert_every_flip_fails(tmp_path / "report.html", text, positions, monkeypatch)


def test_a_few_flips_through_the_command_line(real: Path, keys: Keys, tmp_path: Path) -> None:
    text = real.read_text(encoding="utf-8")
    path = tmp_path / "run.json"
    for at in value_positions(text)[1000::4000][:5]:
        path.write_text(flipped(text, at), encoding="utf-8")
        code, out = verify(str(path), "--key", keys.key.fingerprint)
        assert code in (EXIT_BAD_CARD, EXIT_USAGE), out
        assert first_line(out).startswith(("INVALID", "UNREADABLE"))


# --- --recheck on the (simulated) card -----------------------------------------------------------


@pytest.fixture
def recheck(sim: Path, keys: Keys, tmp_path: Path) -> Callable[..., tuple[int, str]]:
    def run(faults: str = REMAPPED, serial: str = SERIAL) -> tuple[int, str]:
        card = tmp_path / f"card-{len(list(tmp_path.glob('card-*')))}.toml"
        card.write_text(card_toml(faults, header=f'serial = "{serial}"'), encoding="utf-8")
        return verify(str(sim), "--key", keys.key.fingerprint, "--recheck", "--sim-card", str(card))

    return run


def test_recheck_on_the_same_card_is_consistent(recheck: Callable[..., tuple[int, str]]) -> None:
    code, out = recheck()
    assert code == EXIT_SIMULATED, out  # consistent; the record is still of a simulated card
    assert out.splitlines()[2].startswith("RECHECK CONSISTENT"), out
    for item in ("identity", "counters", "memory", "compute"):
        assert re.search(rf"^  {item}\s+pass\s", out, re.MULTILINE), item
    assert "bandwidth.triad_gbs" in out and "gemm.fp32_tflops" in out


def test_recheck_on_another_card_is_inconsistent(recheck: Callable[..., tuple[int, str]]) -> None:
    code, out = recheck(serial="SIM-VERIFY-B")
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID (SIMULATED CARD): RECHECK INCONSISTENT: identity")
    assert re.search(r"^  identity\s+fail\s+another card", out, re.MULTILINE)


def test_recheck_with_slower_memory_is_inconsistent(
    recheck: Callable[..., tuple[int, str]],
) -> None:
    code, out = recheck(REMAPPED + "\nbandwidth_scale = 0.8")
    assert code == EXIT_BAD_CARD
    assert re.search(r"^  compute\s+fail\s", out, re.MULTILINE)
    assert re.search(r"bandwidth\.copy_gbs .* 0\.800 .* lower", out)


def test_backend_options_need_recheck(sim: Path) -> None:
    result = invoke("verify", str(sim), "--sim-card", "h100-sxm5-80gb")
    assert result.exit_code == EXIT_USAGE and "--recheck" in result.stderr


def test_the_record_is_read_as_stored(real: Path) -> None:
    assert load(real).signature is not None
