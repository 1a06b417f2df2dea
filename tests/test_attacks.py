"""A dishonest seller and a careful buyer: every route to a false VALID, one test per class.

The seller holds a real signing key (pinned by the buyer) and may edit a record, re-sign it,
edit the page, grade under doctored rules or claim another gpuhealth version. Each attack asserts
the exact exit code and first line of `gpuhealth verify`: re-signing with the seller's own key
never turns a faulty card's record into a plain VALID, and nothing unproven is ever VALID.

Simulated cards are graded here (the stuck-bit card is F, the slow-memory card C); a real H100's
record (tests/data/runs, graded B) stands for a real card, since only a real card can be VALID.
"""

from __future__ import annotations

import html
import json
import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from simkit import EXAMPLES, card_toml, invoke
from verifykit import (
    check_lines,
    first_line,
    load,
    real_record,
    rejudged,
    resigned_data,
    verify,
    write_signed,
)

from gpuhealth import __version__
from gpuhealth.certificate.keys import SigningKey, generate_key, pin, pinned_file
from gpuhealth.certificate.report import write_reports
from gpuhealth.errors import (
    EXIT_BAD_CARD,
    EXIT_OK,
    EXIT_SIGNER_UNTRUSTED,
    EXIT_SIMULATED,
    EXIT_TRUST_STORE,
    EXIT_VERSION_UNCHECKABLE,
)
from gpuhealth.judge.grading import DEFAULT_POLICY, load_policy, policy_from_text
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.models import Grade, Reason, RulesFile, RunRecord, Verification

STUCK_BIT = EXAMPLES / "stuck-bit.toml"
SLOW_MEMORY = EXAMPLES / "slow-memory.toml"
HEALTHY = "h100-sxm5-80gb"  # the built-in simulated H100


@pytest.fixture(scope="module")
def seller(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return generate_key(tmp_path_factory.mktemp("seller") / "keys" / "signing.key")


@pytest.fixture(autouse=True)
def buyer_pinned_the_seller(
    seller: SigningKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "buyer"))
    monkeypatch.delenv("GPUHEALTH_KEY_FILE", raising=False)
    assert pin(seller.fingerprint, "the seller")


def graded(root: Path, card: Path | str, key: SigningKey, *extra: str) -> Path:
    out = root / "run"
    result = invoke(
        "grade", "--quick", "--quiet", "--sim-card", str(card), "--key-file", str(key.path),
        "--out", str(out), *extra,
    )  # fmt: skip
    assert (out / "run.json").is_file(), result.output
    return out / "run.json"


@pytest.fixture(scope="module")
def stuck(seller: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """The stuck-bit card's signed record: grade F, memory errors at 0x1F000 bit 3."""
    record = load(graded(tmp_path_factory.mktemp("stuck"), STUCK_BIT, seller))
    assert record.grade is not None and record.grade.letter == "F"
    return record


@pytest.fixture(scope="module")
def real(seller: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_signed(real_record(), seller, tmp_path_factory.mktemp("real"))


def write(record: RunRecord, key: SigningKey, folder: Path) -> Path:
    return write_signed(record, key, folder)


def resign_json(path: Path, key: SigningKey, edit: dict[str, object], folder: Path) -> Path:
    """run.json with top-level fields replaced, signed again (a seller's hand edit)."""
    data = json.loads(path.read_text(encoding="utf-8")) | edit
    out = folder / "run.json"
    folder.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(resigned_data(data, key), indent=1), encoding="utf-8")
    return out


ALL_CLEAR = (Reason("all-clear", "A", "every measured metric in the healthy range, no errors"),)


def as_grade_a(record: RunRecord) -> RunRecord:
    assert record.grade is not None
    disposition = load_policy().spec.dispositions.A
    return replace(record, grade=replace(record.grade, letter="A", disposition=disposition,
                                         reasons=ALL_CLEAR))  # fmt: skip


# --- an F card's record turned into an A ---------------------------------------------------------


@pytest.mark.parametrize("name", ["run.json", "report.html"])
def test_f_card_with_its_grade_edited_to_a_and_resigned_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path, name: str
) -> None:
    path = write(as_grade_a(stuck), seller, tmp_path / "a").with_name(name)
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        "INVALID (SIMULATED CARD): judgement: the record says grade A, but its measurements "
        f"give F under the shipped rules of gpuhealth {__version__} (memory-errors"
    ), out
    assert check_lines(out)["signature"] == check_lines(out)["signer"] == "pass"
    assert check_lines(out)["shipped"] == "fail"


def test_f_card_with_a_healthy_cards_whole_judgement_pasted_in_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    """The analysis, findings, grade and rules of a healthy card of the same model."""
    donor = load(graded(tmp_path, HEALTHY, seller))
    assert donor.grade is not None and donor.grade.letter == "A"
    pasted = replace(stuck, analysis=donor.analysis, grade=donor.grade, rules=donor.rules)
    code, out = verify(str(write(pasted, seller, tmp_path / "pasted")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID (SIMULATED CARD): judgement: the record says grade")
    assert "but its measurements give F" in first_line(out)


def test_f_card_whose_memtest_is_marked_passed_with_its_evidence_removed_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    memtest = stuck.test("memtest")
    assert memtest is not None and memtest.status == "failed"
    cleared = replace(memtest, status="passed", verifications=())
    edited = replace(stuck, tests=tuple(cleared if t is memtest else t for t in stuck.tests))
    # and judged again, so that the judgement itself follows from the doctored measurements
    edited = rejudged(edited, load_policy(), match_profile(stuck.identity, builtin_profiles()))
    code, out = verify(str(write(edited, seller, tmp_path / "cleared")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out) == (
        "INVALID (SIMULATED CARD): evidence: memtest: no verification recorded"
    ), out


def test_a_test_removed_from_the_record_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    edited = replace(stuck, tests=tuple(t for t in stuck.tests if t.name != "memtest"))
    edited = rejudged(edited, load_policy(), match_profile(stuck.identity, builtin_profiles()))
    code, out = verify(str(write(edited, seller, tmp_path / "removed")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID (SIMULATED CARD): evidence: run: "), out
    assert "memtest" in first_line(out)


def test_evidence_thinned_below_the_presets_minimum_is_invalid(
    real: Path, seller: SigningKey, tmp_path: Path
) -> None:
    """A real card's memtest claimed passed after 1 of its 64 patterns."""
    record = load(real)
    memtest = record.test("memtest")
    assert memtest is not None
    metric = memtest.metrics[0]
    check = memtest.verifications[0]
    words = int(memtest.parameters["tested_bytes"]) // 4
    thin = replace(
        memtest,
        parameters=memtest.parameters | {"patterns": 1, "patterns_done": 1, "passes": 1},
        metrics=(replace(metric, values=metric.values[:1]),),
        verifications=(replace(check, checked=2 * words),),
    )
    edited = replace(record, tests=tuple(thin if t is memtest else t for t in record.tests))
    edited = rejudged(edited, load_policy(), match_profile(record.identity, builtin_profiles()))
    code, out = verify(str(write(edited, seller, tmp_path / "thin")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        "INVALID: evidence: memtest: 1 of the standard preset's 64 memtest patterns were run"
    ), out


def test_fabricated_clean_memtest_is_caught_by_recheck_on_the_card(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    """The limit of a signature: a seller who fabricates a complete, clean memtest signs a lie
    that the record cannot expose (and a simulated card is still never VALID). The card can:
    `verify --recheck` on the stuck-bit card says INCONSISTENT and names the address."""
    memtest = stuck.test("memtest")
    assert memtest is not None
    clean = replace(
        memtest,
        status="passed",
        verifications=tuple(
            Verification(v.method, True, v.checked, 0) for v in memtest.verifications
        ),
    )
    forged = replace(stuck, tests=tuple(clean if t is memtest else t for t in stuck.tests))
    forged = rejudged(forged, load_policy(), match_profile(stuck.identity, builtin_profiles()))
    assert forged.grade is not None and forged.grade.letter == "A"
    path = write(forged, seller, tmp_path / "forged")
    code, out = verify(str(path))
    assert code == EXIT_SIMULATED and "VALID" not in first_line(out), out
    code, out = verify(str(path), "--recheck", "--sim-card", str(STUCK_BIT))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID (SIMULATED CARD): RECHECK INCONSISTENT: memory:")
    assert "address 0x1F000 bit 3" in first_line(out)
    assert re.search(r"^  memory\s+fail\s", out, re.MULTILINE)


def test_any_certificate_calling_the_stuck_bit_card_healthy_is_inconsistent(
    seller: SigningKey, tmp_path: Path
) -> None:
    """A genuine healthy grade of another card, presented as the stuck-bit card's."""
    path = invoke("grade", "--demo", "--quick", "--quiet", "--out", str(tmp_path / "demo"),
                  "--key-file", str(seller.path))  # fmt: skip
    assert path.exit_code == EXIT_OK
    code, out = verify(
        str(tmp_path / "demo" / "report.html"), "--recheck", "--sim-card", str(STUCK_BIT)
    )
    assert code == EXIT_BAD_CARD, out
    assert "RECHECK INCONSISTENT" in first_line(out) and "0x1F000" in first_line(out), out
    assert re.search(r"^  identity\s+fail\s+another card", out, re.MULTILINE)


# --- the visible page -----------------------------------------------------------------------------


def edited_page(real: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = real.with_name("report.html").read_text(encoding="utf-8")
    assert old in text
    page = tmp_path / "report.html"
    page.write_text(text.replace(old, new, 1), encoding="utf-8")
    return page


def test_the_grade_on_the_page_edited_with_the_record_untouched_is_invalid(
    real: Path, tmp_path: Path
) -> None:
    page = edited_page(real, tmp_path, '<div class="letter">B</div>', '<div class="letter">A</div>')
    code, out = verify(str(page))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out) == "INVALID: page: the page shows grade A; the signed record says B"


def test_a_reason_on_the_page_edited_is_named(real: Path, tmp_path: Path) -> None:
    disposition = load(real).grade
    assert disposition is not None
    page = edited_page(real, tmp_path, disposition.disposition, "Resale as new.")
    code, out = verify(str(page))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID: page: the page shows 'Resale as new.' where the "
                                      "signed record reads 'Resale with disclosure")  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("</style>", "#findings { display: none; }\n</style>"),  # a hidden finding
        ("<body>", "<!-- a seller's note --><body>"),
    ],
)
def test_a_hidden_change_to_the_page_is_invalid(
    real: Path, tmp_path: Path, old: str, new: str
) -> None:
    code, out = verify(str(edited_page(real, tmp_path, old, new)))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID: page: the page's markup differs"), out


def test_a_page_claiming_another_renderer_is_not_proven(real: Path, tmp_path: Path) -> None:
    page = edited_page(
        real, tmp_path, f'content="gpuhealth {__version__}"', 'content="gpuhealth 0.1.0"'
    )
    code, out = verify(str(page))
    assert code == EXIT_VERSION_UNCHECKABLE, out
    assert first_line(out).startswith(
        "NOT PROVEN (version not checkable): page: the page was rendered by gpuhealth 0.1.0"
    )


# --- doctored rules -------------------------------------------------------------------------------


def policy_without(rule_id: str, folder: Path) -> Path:
    """The shipped policy with one rule deleted, its name and version kept."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    block = re.search(rf'\[\[rules\]\]\nid = "{rule_id}"\n.*?(?=\n\[\[rules\]\]|\Z)', text, re.S)
    assert block is not None
    path = folder / "default.toml"
    path.write_text(text.replace(block.group(0) + "\n", "", 1), encoding="utf-8")
    assert policy_from_text(path.read_text(), "x").label == load_policy().label
    return path


def test_a_shipped_policy_with_a_rule_deleted_is_invalid_and_bannered(
    seller: SigningKey, tmp_path: Path
) -> None:
    policy = policy_without("memory-errors", tmp_path)
    path = graded(tmp_path, STUCK_BIT, seller, "--policy", str(policy))
    record = load(path)
    assert record.grade is not None and record.grade.letter != "F"
    code, out = verify(str(path.with_name("report.html")))
    assert code == EXIT_BAD_CARD, out
    banner = f"graded {record.grade.letter} under a custom policy 'gpuhealth-default v1' (sha256 "
    assert first_line(out).startswith(f"INVALID (SIMULATED CARD): {banner}"), out
    assert f"under the shipped rules of gpuhealth {__version__}: F, because memory-errors" in (
        first_line(out)
    )
    again = invoke("grade", "--quick", "--sim-card", str(STUCK_BIT), "--policy", str(policy),
                   "--out", str(tmp_path / "again"), "--json")  # fmt: skip
    said = json.loads(again.stdout)["cards"][0]
    assert said["shipped_grade"] == "F" and said["rules_banner"].startswith(banner)
    page = html.unescape(path.with_name("report.html").read_text(encoding="utf-8"))
    shown = re.search(r"OTHER RULES THAN GPUHEALTH'S: (.*?)</div>", page)
    assert shown is not None  # the certificate says the same, first
    assert first_line(out) == f"INVALID (SIMULATED CARD): {shown.group(1)}"


def stricter_policy(folder: Path) -> Path:
    """The shipped policy renamed, with an unverified identity graded C instead of B."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    block = re.search(r'id = "identity-unverified"\n(.*?)grade = "B"', text, re.S)
    assert block is not None
    stricter = folder / "strict.toml"
    stricter.write_text(
        text.replace(block.group(0), block.group(0)[:-3] + '"C"', 1).replace(
            'name = "gpuhealth-default"', 'name = "shop-strict"', 1
        ),
        encoding="utf-8",
    )
    return stricter


def test_a_stricter_policy_is_valid_and_says_so_first(seller: SigningKey, tmp_path: Path) -> None:
    stricter = stricter_policy(tmp_path)
    record = real_record(policy=load_policy(stricter))
    assert record.grade is not None and record.grade.letter == "C"
    path = write(record, seller, tmp_path / "strict")
    code, out = verify(str(path.with_name("report.html")))
    assert code == EXIT_OK, out
    assert first_line(out).startswith(
        "VALID: graded C under a custom policy 'shop-strict v1' (sha256 "
    ), out
    assert f"under the shipped rules of gpuhealth {__version__}: B, because " in first_line(out)
    assert "identity-unverified: identity checks against the NVIDIA H100 SXM5 80GB registry" in (
        first_line(out)
    )
    assert check_lines(out)["shipped"] == "pass" and "stricter" in out


def test_other_rules_are_said_up_front_even_when_the_signer_is_not_trusted(
    tmp_path: Path,
) -> None:
    stranger = generate_key(tmp_path / "stranger" / "signing.key")
    strict = real_record(policy=load_policy(stricter_policy(tmp_path)))
    code, out = verify(str(write(strict, stranger, tmp_path / "strict")))
    assert code == EXIT_SIGNER_UNTRUSTED, out
    assert first_line(out).startswith("NOT PROVEN (signer not trusted): signer:")
    assert out.splitlines()[1].startswith(
        "graded under other rules than gpuhealth's: graded C under a custom policy 'shop-strict"
    ), out


def test_a_profile_with_lowered_centres_is_invalid(seller: SigningKey, tmp_path: Path) -> None:
    """The shipped H100 profile, key and name kept, bandwidth centres 20% lower."""
    text = (
        Path(__file__).parent.parent / "gpuhealth/judge/profiles/data/h100-sxm5-80gb.toml"
    ).read_text(encoding="utf-8")

    def lower(match: re.Match[str]) -> str:
        return f"center = {float(match.group(1)) * 0.8:.1f}"

    lowered = tmp_path / "h100.toml"
    lowered.write_text(re.sub(r"center = ([\d.]+)", lower, text), encoding="utf-8")
    path = graded(tmp_path, SLOW_MEMORY, seller, "--profile", str(lowered))
    record = load(path)
    assert record.grade is not None and record.grade.letter in "AB"
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        f"INVALID (SIMULATED CARD): graded {record.grade.letter} under the shipped policy "
        "'gpuhealth-default v1' and a custom profile 'h100-sxm5-80gb' (sha256 "
    ), out
    assert f"gpuhealth {__version__}: C, because performance-deficit" in first_line(out)


def test_a_rig_reference_that_excuses_a_hot_card_is_invalid(
    seller: SigningKey, tmp_path: Path
) -> None:
    """A seller's "rig reference" (the shipped H100 profile, its thermal reference raised to what
    a worn card reads, claimed for this host by 20 cards): the card grades A under it, but the
    buyer cannot check the rig, so a grade better than the shipped rules give is INVALID."""
    text = (
        Path(__file__).parent.parent / "gpuhealth/judge/profiles/data/h100-sxm5-80gb.toml"
    ).read_text(encoding="utf-8")
    worn = tmp_path / "worn.toml"
    worn.write_text(card_toml("thermal_resistance_scale = 1.5"), encoding="utf-8")
    host = socket.gethostname()
    rig = re.sub(
        r"\[thermal\]\nc_per_w = [\d.]+\n",
        f'[thermal]\nc_per_w = 0.0690\ncards = 20\nrig = "{host}"\n',
        text,
    )
    assert rig != text
    (tmp_path / "rig.toml").write_text(rig, encoding="utf-8")
    path = graded(tmp_path, worn, seller, "--profile", str(tmp_path / "rig.toml"))
    record = load(path)
    assert record.grade is not None and record.grade.letter == "A"
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert "a custom profile 'h100-sxm5-80gb'" in first_line(out), out
    assert f"gpuhealth {__version__}: B, because thermal-resistance-unproven" in first_line(out)


def custom_record(stuck: RunRecord, tmp_path: Path) -> RunRecord:
    policy = load_policy(policy_without("memory-errors", tmp_path))
    return rejudged(stuck, policy, match_profile(stuck.identity, builtin_profiles()))


def test_a_custom_policy_claimed_as_shipped_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    record = custom_record(stuck, tmp_path)
    assert record.rules is not None and record.rules.policy.shipped_in == ()
    claimed = replace(record.rules.policy, shipped_in=(__version__,))
    edited = replace(record, rules=replace(record.rules, policy=claimed))
    code, out = verify(str(write(edited, seller, tmp_path / "claimed")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        "INVALID (SIMULATED CARD): rules: the record says its policy 'gpuhealth-default v1' "
        f"was shipped by {__version__}; no version shipped it"
    ), out


def test_the_embedded_policy_text_edited_after_grading_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    record = custom_record(stuck, tmp_path)
    assert record.rules is not None
    text = record.rules.policy.text.replace('grade = "F"', 'grade = "B"')
    edited = replace(
        record, rules=replace(record.rules, policy=replace(record.rules.policy, text=text))
    )
    code, out = verify(str(write(edited, seller, tmp_path / "text")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        "INVALID (SIMULATED CARD): rules: the embedded policy's sha256 is not that of its text"
    ), out


def test_the_shipped_grade_claim_edited_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    record = custom_record(stuck, tmp_path)
    assert record.rules is not None and record.grade is not None
    assert record.rules.shipped_grade is not None
    lie: Grade = replace(record.grade)
    edited = replace(record, rules=replace(record.rules, shipped_grade=lie))
    code, out = verify(str(write(edited, seller, tmp_path / "lie")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith(
        f"INVALID (SIMULATED CARD): shipped: the record says the shipped rules give "
        f"{record.grade.letter}; they give F"
    ), out


def test_the_embedded_rules_removed_are_invalid(
    real: Path, seller: SigningKey, tmp_path: Path
) -> None:
    path = resign_json(real, seller, {"rules": None}, tmp_path / "norules")
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out) == (
        f"INVALID: rules: gpuhealth {__version__} embeds the rules in every record it judges; "
        "this record's were removed"
    )


# --- versions ---------------------------------------------------------------------------------


def test_a_record_claiming_an_older_tool_version_is_invalid(
    real: Path, seller: SigningKey, tmp_path: Path
) -> None:
    path = resign_json(real, seller, {"tool_version": "0.1.0"}, tmp_path / "old")
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out) == (
        "INVALID: version: the record says gpuhealth 0.1.0 made it, but that version wrote "
        "schema 1 records, not 2: the version was changed"
    )


def test_a_record_claiming_an_older_judging_version_is_invalid(
    real: Path, seller: SigningKey, tmp_path: Path
) -> None:
    data = json.loads(real.read_text(encoding="utf-8"))
    data["rules"]["judged_by"] = "0.1.0"
    path = resign_json(real, seller, {"rules": data["rules"]}, tmp_path / "judged")
    code, out = verify(str(path))
    assert code == EXIT_BAD_CARD, out
    assert "that version did not embed rules in records" in first_line(out)


@pytest.mark.parametrize("field", ["tool_version", "judged_by"])
def test_an_unknown_version_is_not_proven(
    real: Path, seller: SigningKey, tmp_path: Path, field: str
) -> None:
    data = json.loads(real.read_text(encoding="utf-8"))
    if field == "tool_version":
        edit: dict[str, object] = {"tool_version": "0.0.9"}
    else:
        edit = {"rules": data["rules"] | {"judged_by": "0.0.9"}}
    code, out = verify(str(resign_json(real, seller, edit, tmp_path / field)))
    assert code == EXIT_VERSION_UNCHECKABLE, out
    assert first_line(out).startswith("NOT PROVEN (version not checkable): ")
    assert "0.0.9" in first_line(out)


def legacy_signed(name: str, key: SigningKey, folder: Path) -> Path:
    """A recorded 0.1.0 record (tests/data/runs) signed the 0.1.0 way."""
    import base64

    source = Path(__file__).parent / "data" / "runs" / name
    data = json.loads(source.read_text(encoding="utf-8"))
    data["signature"] = {
        "algorithm": "ed25519",
        "public_key": key.public_b64,
        "key_fingerprint": key.fingerprint,
        "signed_at": "2026-11-26T06:00:00+00:00",
    }
    legacy = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["signature"]["value"] = base64.b64encode(key.private.sign(legacy.encode())).decode()
    path = folder / name
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def test_a_record_signed_by_gpuhealth_0_1_0_still_verifies_its_signature_but_is_not_proven(
    seller: SigningKey, tmp_path: Path
) -> None:
    """A 0.1.0 record graded under 0.1.0's final rules: its signature, judgement and shipped
    checks pass; its evidence minimums were not recorded then, so it is not VALID."""
    code, out = verify(str(legacy_signed("sim-stuck-bit-quick.json", seller, tmp_path)))
    assert code == EXIT_VERSION_UNCHECKABLE, out
    checks = check_lines(out)
    assert checks["signature"] == checks["judgement"] == checks["shipped"] == "pass", out
    assert "python-sorted-json (gpuhealth 0.1.0) bytes" in out
    assert first_line(out).startswith(
        "NOT PROVEN (version not checkable) (SIMULATED CARD): evidence: a record of gpuhealth 0.1.0"
    ), out


def test_a_0_1_0_record_graded_under_a_development_policy_is_not_proven(
    seller: SigningKey, tmp_path: Path
) -> None:
    """The real H100 graded C on the day under a policy 0.1.0 changed before it was final."""
    name = "h100-second-card-standard-2026-11-26.json"
    code, out = verify(str(legacy_signed(name, seller, tmp_path)))
    assert code == EXIT_VERSION_UNCHECKABLE, out
    assert check_lines(out)["signature"] == "pass" and check_lines(out)["rules"] == "unproven"
    assert "not a policy a released gpuhealth shipped" in out


# --- who signed it, and the trust store ----------------------------------------------------------


def test_a_report_signed_by_an_unknown_key_is_not_proven(real: Path, tmp_path: Path) -> None:
    stranger = generate_key(tmp_path / "stranger" / "signing.key")
    path = write(load(real), stranger, tmp_path / "stranger-run")
    code, out = verify(str(path))
    assert code == EXIT_SIGNER_UNTRUSTED, out
    assert first_line(out) == (
        f"NOT PROVEN (signer not trusted): signer: signed by {stranger.fingerprint}, which is "
        "not one of the 1 pinned key(s)"
    )


@pytest.mark.parametrize("damage", ["world-writable", "directory", "bad line", "not utf-8"])
def test_a_trust_store_that_cannot_be_read_is_never_nothing_pinned(real: Path, damage: str) -> None:
    store = pinned_file()
    if damage == "world-writable":
        store.chmod(0o666)
    elif damage == "directory":
        store.unlink()
        store.mkdir()
    elif damage == "bad line":
        store.write_text("SHA256:not-a-fingerprint\n", encoding="utf-8")
    else:
        store.write_bytes(b"\xff\xfe\x00")
    code, out = verify(str(real))
    assert code == EXIT_TRUST_STORE, out
    assert first_line(out).startswith(
        "NOT PROVEN (trust store unreadable): signer: the trust store cannot be read"
    ), out


# --- a simulated card --------------------------------------------------------------------------


def test_a_simulated_card_relabelled_as_a_real_one_is_invalid(
    stuck: RunRecord, seller: SigningKey, tmp_path: Path
) -> None:
    """The sim's verifications check a small window; a real card's record checks everything."""
    healthy = load(graded(tmp_path, HEALTHY, seller))
    identity = replace(healthy.identity, backend="cuda", sim_card=None)
    relabelled = replace(healthy, backend="cuda", identity=identity)
    relabelled = rejudged(relabelled, load_policy(), match_profile(identity, builtin_profiles()))
    code, out = verify(str(write(relabelled, seller, tmp_path / "relabelled")))
    assert code == EXIT_BAD_CARD, out
    assert first_line(out).startswith("INVALID: evidence: "), out


def test_the_certificate_of_a_clean_real_card_has_no_banner(real: Path) -> None:
    page = real.with_name("report.html").read_text(encoding="utf-8")
    assert "OTHER RULES THAN GPUHEALTH" not in page
    record = load(real)
    assert record.rules is not None and record.rules.shipped_grade is None
    assert record.rules.policy == RulesFile(
        record.rules.policy.name,
        record.rules.policy.sha256,
        DEFAULT_POLICY.read_text(encoding="utf-8"),
        record.rules.policy.shipped_in,
    )
    assert __version__ in record.rules.policy.shipped_in
    write_reports(record, real.parent)  # rendering again changes nothing: the page is the record
    code, _ = verify(str(real.with_name("report.html")))
    assert code == EXIT_OK
