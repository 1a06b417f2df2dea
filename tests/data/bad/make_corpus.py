"""Write the bad-input corpus: realistic mistakes in each kind of file gpuhealth reads.

    python tests/data/bad/make_corpus.py

Each file starts from a valid one (examples/simcards/, gpuhealth/data/policies/default.toml, a
shipped profile, a recorded run, a generated key) with one mistake, and expected.toml records
the word its one-line error must name (the field, or what is wrong with the file as a whole).
tests/test_bad_inputs.py runs each through the real command line. The output is deterministic:
run it again and git shows no change (the keys are derived from fixed seeds).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
POLICY = (ROOT / "gpuhealth/data/policies/default.toml").read_text(encoding="utf-8")
PROFILE = (ROOT / "gpuhealth/judge/profiles/data/h100-sxm5-80gb.toml").read_text(encoding="utf-8")
RECORD_TEXT = (ROOT / "tests/data/runs/sim-stuck-bit-quick.json").read_text(encoding="utf-8")

Entry = tuple[str, bytes, str]  # file name, content, the word the error must name
corpus: dict[str, list[Entry]] = {}


def add(kind: str, name: str, content: str | bytes, word: str) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    corpus.setdefault(kind, []).append((name, data, word))


def sub(text: str, pattern: str, replacement: str) -> str:
    """text with the first line matching pattern (a regex on one line) replaced."""
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    return new


# --- sim cards ------------------------------------------------------------------------------------


def card(faults: str = "", header: str = "", identity: str = "") -> str:
    text = '# a card spec with one mistake\nmodel = "h100-sxm5-80gb"\nserial = "SIM-BAD-0001"\n'
    text += header
    if identity:
        text += f"[identity]\n{identity}\n"
    if faults:
        text += f"[faults]\n{faults}\n"
    return text


SIMCARDS: list[tuple[str, str, str]] = [
    ("bandwidth-scale-tiny", card("bandwidth_scale = 1e-300"), "bandwidth_scale"),
    ("bandwidth-scale-zero", card("bandwidth_scale = 0.0"), "bandwidth_scale"),
    ("bandwidth-scale-negative", card("bandwidth_scale = -0.5"), "bandwidth_scale"),
    ("bandwidth-scale-inf", card("bandwidth_scale = inf"), "bandwidth_scale"),
    ("bandwidth-scale-nan", card("bandwidth_scale = nan"), "bandwidth_scale"),
    ("bandwidth-scale-string", card('bandwidth_scale = "0.85"'), "bandwidth_scale"),
    ("bandwidth-scale-percent", card("bandwidth_scale = 85"), "bandwidth_scale"),
    ("bandwidth-scale-bool", card("bandwidth_scale = true"), "bandwidth_scale"),
    ("fp32-scale-tiny", card("fp32_scale = 1e-12"), "fp32_scale"),
    ("fp16-scale-inf", card("fp16_scale = +inf"), "fp16_scale"),
    ("fp16-scale-string", card('fp16_scale = "half"'), "fp16_scale"),
    ("thermal-scale-zero", card("thermal_resistance_scale = 0.0"), "thermal_resistance_scale"),
    ("thermal-scale-huge", card("thermal_resistance_scale = 1e6"), "thermal_resistance_scale"),
    ("power-limit-string", card('power_limit_w = "300"'), "power_limit_w"),
    ("power-limit-kw", card("power_limit_w = 0.3"), "power_limit_w"),
    ("power-limit-above-max", card("power_limit_w = 900.0"), "power_limit_w"),
    ("power-limit-nan", card("power_limit_w = nan"), "power_limit_w"),
    ("pcie-width-wider-than-card", card("pcie_width = 32"), "pcie_width"),
    ("pcie-width-string", card('pcie_width = "x8"'), "pcie_width"),
    ("pcie-gen-above-card", card("pcie_gen = 6"), "pcie_gen"),
    ("pcie-gen-float", card("pcie_gen = 4.0"), "pcie_gen"),
    (
        "stuck-bit-beyond-memory",
        card("stuck_bits = [{ address = 0x20000000000, bit = 3, value = 0 }]"),
        "address",
    ),
    (
        "stuck-bit-in-reserved-memory",
        card("stuck_bits = [{ address = 85520809980, bit = 3, value = 0 }]"),
        "address",
    ),
    (
        "stuck-bit-address-string",
        card('stuck_bits = [{ address = "0x1F000", bit = 3, value = 0 }]'),
        "address",
    ),
    (
        "stuck-bit-unaligned",
        card("stuck_bits = [{ address = 0x1F002, bit = 3, value = 0 }]"),
        "address",
    ),
    ("stuck-bit-bit-32", card("stuck_bits = [{ address = 0x1F000, bit = 32, value = 0 }]"), "bit"),
    (
        "stuck-bit-value-bool",
        card("stuck_bits = [{ address = 0x1F000, bit = 3, value = true }]"),
        "value",
    ),
    (
        "stuck-bit-value-2",
        card("stuck_bits = [{ address = 0x1F000, bit = 3, value = 2 }]"),
        "value",
    ),
    (
        "stuck-bit-misspelled",
        card("stuck_bits = [{ adress = 0x1F000, bit = 3, value = 0 }]"),
        "adress",
    ),
    (
        "flaky-bit-beyond-memory",
        card("flaky_bits = [{ address = 0x2000000000, bit = 1, probability = 0.5 }]"),
        "address",
    ),
    (
        "flaky-bit-probability-percent",
        card("flaky_bits = [{ address = 0x100, bit = 1, probability = 50 }]"),
        "probability",
    ),
    (
        "flaky-bit-probability-nan",
        card("flaky_bits = [{ address = 0x100, bit = 1, probability = nan }]"),
        "probability",
    ),
    ("wrong-results-rate-inf", card("wrong_results = { rate = inf, sm = 3 }"), "rate"),
    ("wrong-results-sm-beyond", card("wrong_results = { rate = 0.01, sm = 500 }"), "sm"),
    ("working-sms-above-model", card("working_sm_count = 200"), "working_sm_count"),
    ("working-sms-zero", card("working_sm_count = 0"), "working_sm_count"),
    ("ecc-count-float", card("ecc_uncorrected = 2.5"), "ecc_uncorrected"),
    ("ecc-count-negative", card("ecc_corrected = -1"), "ecc_corrected"),
    ("ecc-enabled-string", card('ecc_enabled = "yes"'), "ecc_enabled"),
    ("ecc-enabled-number", card("ecc_enabled = 1"), "ecc_enabled"),
    ("remapped-rows-string", card('remapped_rows = { correctable = "2" }'), "correctable"),
    ("lost-at-misspelled", card('lost_at = "bandwith"'), "lost_at"),
    ("unreadable-misspelled", card('unreadable = ["ecc_enabeld"]'), "unreadable"),
    ("fault-misspelled", card("bandwidth_scal = 0.8"), "bandwidth_scal"),
    ("xid-code-zero", card('xid = [{ test = "soak", code = 0 }]'), "code"),
    ("other-process-pid-huge", card("other_process = { pid = 99999999999 }"), "pid"),
    ("seed-negative", card(header="seed = -1\n"), "seed"),
    ("seed-string", card(header='seed = "7"\n'), "seed"),
    ("wall-time-scale-nan", card(header="wall_time_scale = nan\n"), "wall_time_scale"),
    ("top-level-misspelled", card(header='serail = "SIM-0002"\n'), "serail"),
    ("model-unknown", card().replace("h100-sxm5-80gb", "h100-sxm5"), "model"),
    ("model-number", card().replace('"h100-sxm5-80gb"', "100"), "model"),
    ("identity-sm-count-string", card(identity='sm_count = "132"'), "sm_count"),
    (
        "identity-power-limits-reversed",
        card(identity="power_limit_default_w = 700.0\npower_limit_max_w = 400.0"),
        "power_limit_max_w",
    ),
    ("identity-clock-inf", card(identity="max_sm_clock_mhz = inf"), "max_sm_clock_mhz"),
    ("identity-pci-id-short", card(identity='pci_device_id = "0x2330"'), "pci_device_id"),
    (
        "syntax-unclosed-array",
        card("stuck_bits = [{ address = 0x1F000, bit = 3, value = 0 }"),
        "TOML",
    ),
    ("syntax-duplicate-key", card("pcie_width = 8\npcie_width = 16"), "TOML"),
    ("date-for-serial", card().replace('"SIM-BAD-0001"', "2026-11-26"), "serial"),
]
for name, text, word in SIMCARDS:
    add("simcards", f"{name}.toml", text, word)
add(
    "simcards", "not-utf8.toml", card().encode("utf-8").replace(b"SIM-BAD", b"SIM-\xe9BAD"), "UTF-8"
)
add("simcards", "empty.toml", "", "model")


# --- policies -------------------------------------------------------------------------------------

POLICIES: list[tuple[str, Callable[[str], str], str]] = [
    ("alpha-string", lambda t: sub(t, r"^alpha = .*$", 'alpha = "0.01"'), "alpha"),
    ("alpha-nan", lambda t: sub(t, r"^alpha = .*$", "alpha = nan"), "alpha"),
    ("alpha-inf", lambda t: sub(t, r"^alpha = .*$", "alpha = inf"), "alpha"),
    ("alpha-percent", lambda t: sub(t, r"^alpha = .*$", "alpha = 1"), "alpha"),
    ("alpha-zero", lambda t: sub(t, r"^alpha = .*$", "alpha = 0.0"), "alpha"),
    ("alpha-bool", lambda t: sub(t, r"^alpha = .*$", "alpha = true"), "alpha"),
    ("alpha-misspelled", lambda t: sub(t, r"^alpha = ", "alhpa = "), "alhpa"),
    (
        "deficit-percent",
        lambda t: sub(t, r"^min_relative_deficit = .*$", "min_relative_deficit = 3"),
        "min_relative_deficit",
    ),
    (
        "deficit-tiny-above-very-low",
        lambda t: sub(t, r"^min_relative_deficit = .*$", "min_relative_deficit = 0.2"),
        "very_low_deficit",
    ),
    (
        "very-low-deficit-nan",
        lambda t: sub(t, r"^very_low_deficit = .*$", "very_low_deficit = nan"),
        "very_low_deficit",
    ),
    ("run-to-run-zero", lambda t: sub(t, r"^run_to_run = .*$", "run_to_run = 0.0"), "run_to_run"),
    (
        "run-to-run-tiny",
        lambda t: sub(t, r"^run_to_run = .*$", "run_to_run = 1e-300"),
        "run_to_run",
    ),
    (
        "run-to-run-string",
        lambda t: sub(t, r"^run_to_run = .*$", 'run_to_run = "0.8%"'),
        "run_to_run",
    ),
    ("tail-dof-inf", lambda t: sub(t, r"^tail_dof = .*$", "tail_dof = inf"), "tail_dof"),
    ("tail-dof-string", lambda t: sub(t, r"^tail_dof = .*$", 'tail_dof = "10"'), "tail_dof"),
    ("tail-dof-one", lambda t: sub(t, r"^tail_dof = .*$", "tail_dof = 1"), "tail_dof"),
    (
        "bound-confidence-percent",
        lambda t: sub(t, r"^bound_confidence = .*$", "bound_confidence = 95"),
        "bound_confidence",
    ),
    (
        "statistics-unknown-key",
        lambda t: sub(t, r"^\[statistics\]$", "[statistics]\nbeta = 0.2"),
        "beta",
    ),
    ("grade-lowercase", lambda t: sub(t, r'^grade = "F"$', 'grade = "f"'), "grade"),
    ("grade-unknown", lambda t: sub(t, r'^grade = "F"$', 'grade = "E"'), "grade"),
    ("grade-number", lambda t: sub(t, r'^grade = "F"$', "grade = 5"), "grade"),
    (
        "finding-misspelled",
        lambda t: sub(t, r'^finding = "memory_errors"$', 'finding = "memory_error"'),
        "finding",
    ),
    (
        "finding-unknown",
        lambda t: sub(t, r'^finding = "memory_errors"$', 'finding = "fan_noise"'),
        "finding",
    ),
    ("rule-key-misspelled", lambda t: sub(t, r"^rationale = ", "rational = "), "rational"),
    ("rule-id-twice", lambda t: sub(t, r'^id = "wrong-results"$', 'id = "memory-errors"'), "id"),
    ("rule-id-number", lambda t: sub(t, r'^id = "wrong-results"$', "id = 2"), "id"),
    (
        "min-measure-string",
        lambda t: sub(t, r"^min_measure = .*$", 'min_measure = "0.1"'),
        "min_measure",
    ),
    (
        "min-measure-nan",
        lambda t: sub(t, r"^min_measure = .*$", "min_measure = nan"),
        "min_measure",
    ),
    ("max-measure-inf", lambda t: _measure_pair(t, "0.1", "inf"), "max_measure"),
    ("min-above-max", lambda t: _measure_pair(t, "0.5", "0.1"), "max_measure"),
    ("min-equals-max", lambda t: _measure_pair(t, "0.2", "0.2"), "max_measure"),
    ("disposition-missing", lambda t: sub(t, r"^INCOMPLETE = .*$", ""), "INCOMPLETE"),
    ("disposition-number", lambda t: sub(t, r"^A = .*$", "A = 1"), "A"),
    ("version-number-ok-name-missing", lambda t: sub(t, r"^name = .*$", ""), "name"),
    ("version-date", lambda t: sub(t, r'^version = "1"$', "version = 2026-11-26"), "version"),
    ("syntax-error", lambda t: sub(t, r"^alpha = .*$", "alpha = 0.01 0.02"), "TOML"),
    ("rules-empty", lambda t: t[: t.index("[[rules]]")] + "rules = []\n", "rules"),
]


def _measure_pair(text: str, low: str, high: str) -> str:
    """The first rule with a min_measure, given min_measure = low and max_measure = high."""
    start = text.index("min_measure = ")
    end = text.index("\n", start)
    block_end = text.find("[[rules]]", start)
    block = text[end:block_end]
    block = re.sub(r"^max_measure = .*\n", "", block, flags=re.MULTILINE)
    return text[:start] + f"min_measure = {low}\nmax_measure = {high}" + block + text[block_end:]


for name, change, word in POLICIES:
    add("policies", f"{name}.toml", change(POLICY), word)
add(
    "policies",
    "not-utf8.toml",
    POLICY.encode("utf-8").replace(b"gpuhealth-default", b"gpuhealth-\xff"),
    "UTF-8",
)


# --- profiles -------------------------------------------------------------------------------------

FIRST_METRIC = '[metrics."bandwidth.copy_gbs"]'


def metric(text: str, line: str, replacement: str) -> str:
    """In the first metric's table (bandwidth.copy_gbs), the line starting with `line`."""
    start = text.index(FIRST_METRIC)
    head, tail = text[:start], text[start:]
    return head + sub(tail, rf"^{re.escape(line)}.*$", replacement)


PROFILES: list[tuple[str, Callable[[str], str], str]] = [
    ("center-string", lambda t: metric(t, "center =", 'center = "3024.8"'), "center"),
    ("center-nan", lambda t: metric(t, "center =", "center = nan"), "center"),
    ("center-inf", lambda t: metric(t, "center =", "center = inf"), "center"),
    ("center-zero", lambda t: metric(t, "center =", "center = 0.0"), "center"),
    (
        "center-bytes-per-s",
        lambda t: metric(
            metric(t, "center =", "center = 3024800000000.0"), "spread =", "spread = 60497000000.0"
        ),
        "center",
    ),
    (
        "center-tb-per-s",
        lambda t: metric(metric(t, "center =", "center = 3.0248"), "spread =", "spread = 0.0605"),
        "center",
    ),
    ("spread-tiny", lambda t: metric(t, "spread =", "spread = 1e-300"), "spread"),
    ("spread-negative", lambda t: metric(t, "spread =", "spread = -60.0"), "spread"),
    ("spread-larger-than-center", lambda t: metric(t, "spread =", "spread = 3000.0"), "spread"),
    ("spread-string", lambda t: metric(t, "spread =", 'spread = "2%"'), "spread"),
    ("spread-inf", lambda t: metric(t, "spread =", "spread = inf"), "spread"),
    ("n-float", lambda t: metric(t, "n =", "n = 1.5"), "n"),
    ("n-string", lambda t: metric(t, "n =", 'n = "1"'), "n"),
    ("n-negative", lambda t: metric(t, "n =", "n = -3"), "n"),
    (
        "higher-is-better-string",
        lambda t: metric(t, "n =", 'n = 1\nhigher_is_better = "yes"'),
        "higher_is_better",
    ),
    (
        "higher-is-better-number",
        lambda t: metric(t, "n =", "n = 1\nhigher_is_better = 1"),
        "higher_is_better",
    ),
    (
        "published-peak-nan",
        lambda t: metric(t, "published_peak =", "published_peak = nan"),
        "published_peak",
    ),
    (
        "metric-key-misspelled",
        lambda t: t.replace(FIRST_METRIC, '[metrics."bandwidth.cpy_gbs"]'),
        "bandwidth.cpy_gbs",
    ),
    (
        "metric-test-misspelled",
        lambda t: t.replace(FIRST_METRIC, '[metrics."bandwith.copy_gbs"]'),
        "bandwith.copy_gbs",
    ),
    ("metric-key-no-test", lambda t: t.replace(FIRST_METRIC, '[metrics."copy_gbs"]'), "copy_gbs"),
    ("metric-field-misspelled", lambda t: metric(t, "center =", "centre = 3024.8"), "centre"),
    ("metric-missing-source", lambda t: metric(t, "source =", ""), "source"),
    (
        "memory-gib-bytes",
        lambda t: sub(t, r"^memory_gib = .*$", "memory_gib = 85899345920"),
        "memory_gib",
    ),
    (
        "memory-gib-string",
        lambda t: sub(t, r"^memory_gib = .*$", 'memory_gib = "80"'),
        "memory_gib",
    ),
    ("memory-gib-zero", lambda t: sub(t, r"^memory_gib = .*$", "memory_gib = 0"), "memory_gib"),
    ("cards-float", lambda t: sub(t, r"^cards = .*$", "cards = 1.0"), "cards"),
    ("cards-bool", lambda t: sub(t, r"^cards = .*$", "cards = true"), "cards"),
    (
        "nvml-names-string",
        lambda t: sub(t, r"^nvml_names = .*$", 'nvml_names = "NVIDIA H100 80GB HBM3"'),
        "nvml_names",
    ),
    ("thermal-c-per-w-inf", lambda t: sub(t, r"^c_per_w = .*$", "c_per_w = inf"), "c_per_w"),
    ("thermal-c-per-w-kelvin", lambda t: sub(t, r"^c_per_w = .*$", "c_per_w = 49.3"), "c_per_w"),
    (
        "identity-power-reversed",
        lambda t: sub(t, r"^power_limit_max_w = .*$", "power_limit_max_w = 350"),
        "power_limit_max_w",
    ),
    (
        "identity-power-kw",
        lambda t: sub(t, r"^power_limit_default_w = .*$", "power_limit_default_w = 0.7"),
        "power_limit_default_w",
    ),
    (
        "identity-sm-count-string",
        lambda t: sub(t, r"^sm_count = .*$", 'sm_count = "132"'),
        "sm_count",
    ),
    (
        "identity-clock-ghz",
        lambda t: sub(t, r"^max_sm_clock_mhz = .*$", "max_sm_clock_mhz = 1.98"),
        "max_sm_clock_mhz",
    ),
    (
        "identity-pci-id-decimal",
        lambda t: sub(t, r"^pci_device_ids = .*$", 'pci_device_ids = ["590352606"]'),
        "pci_device_ids",
    ),
    ("identity-misspelled", lambda t: sub(t, r"^sm_count = ", "sm_cout = "), "sm_cout"),
    (
        "top-level-misspelled",
        lambda t: sub(t, r"^vbios_versions = ", "vbios_version = "),
        "vbios_version",
    ),
    ("syntax-error", lambda t: sub(t, r"^memory_gib = .*$", "memory_gib = = 80"), "TOML"),
]
for name, change, word in PROFILES:
    add("profiles", f"{name}.toml", change(PROFILE), word)
add(
    "profiles",
    "not-utf8.toml",
    PROFILE.encode("utf-8").replace(b"NVIDIA H100 SXM5", b"NVIDIA H100 \xc0SXM5"),
    "UTF-8",
)


# --- run records ----------------------------------------------------------------------------------


def record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORD_TEXT)
    return data


def dumps(data: Any) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def changed(change: Callable[[dict[str, Any]], object]) -> str:
    data = record()
    change(data)
    return dumps(data)


def text_sub(old: str, new: str) -> str:
    assert RECORD_TEXT.count(old) >= 1, old
    return RECORD_TEXT.replace(old, new, 1)


def first_values(data: dict[str, Any]) -> list[Any]:
    values: list[Any] = data["tests"][0]["metrics"][0]["values"]
    return values


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


RECORDS: list[tuple[str, str, str]] = [
    (
        "duplicate-run-id",
        text_sub('"run_id":', '"run_id": "20261126T000000-OTHER",\n "run_id":'),
        "run_id",
    ),
    ("duplicate-grade", text_sub('"grade": {', '"grade": {"letter": "A"},\n "grade": {'), "grade"),
    ("duplicate-letter", text_sub('"letter": "F"', '"letter": "A", "letter": "F"'), "letter"),
    ("value-nan", changed(lambda d: first_values(d).__setitem__(2, float("nan"))), "values"),
    ("value-infinity", changed(lambda d: first_values(d).__setitem__(2, float("inf"))), "values"),
    (
        "value-minus-infinity",
        changed(lambda d: first_values(d).__setitem__(0, float("-inf"))),
        "values",
    ),
    ("value-overflow", text_sub('"wall_time_s": 77.249', '"wall_time_s": 1e999'), "wall_time_s"),
    ("wall-time-nan", text_sub('"wall_time_s": 77.249', '"wall_time_s": NaN'), "wall_time_s"),
    ("value-string", changed(lambda d: first_values(d).__setitem__(1, "3012.2")), "values"),
    ("value-bool", changed(lambda d: first_values(d).__setitem__(1, True)), "values"),
    (
        "schema-version-string",
        changed(lambda d: d.__setitem__("schema_version", "1")),
        "schema_version",
    ),
    (
        "schema-version-future",
        changed(lambda d: d.__setitem__("schema_version", 99)),
        "schema_version",
    ),
    (
        "schema-version-bool",
        changed(lambda d: d.__setitem__("schema_version", True)),
        "schema_version",
    ),
    ("complete-string", changed(lambda d: d.__setitem__("complete", "true")), "complete"),
    ("complete-number", changed(lambda d: d.__setitem__("complete", 1)), "complete"),
    (
        "memory-string",
        changed(lambda d: d["identity"].__setitem__("memory_total_bytes", "85520809984")),
        "memory_total_bytes",
    ),
    ("sm-count-float", changed(lambda d: d["identity"].__setitem__("sm_count", 132.5)), "sm_count"),
    ("grade-letter-unknown", changed(lambda d: d["grade"].__setitem__("letter", "E")), "letter"),
    (
        "test-status-unknown",
        changed(lambda d: d["tests"][0].__setitem__("status", "pass")),
        "status",
    ),
    ("started-at-number", changed(lambda d: d.__setitem__("started_at", 1795671513)), "started_at"),
    ("missing-run-id", changed(lambda d: d.pop("run_id")), "run_id"),
    ("tests-not-a-list", changed(lambda d: d.__setitem__("tests", {"bandwidth": {}})), "tests"),
    (
        "counters-string",
        changed(lambda d: d["counters_before"].__setitem__("ecc_volatile_corrected", "0")),
        "ecc_volatile_corrected",
    ),
    ("nested-too-deep", changed(lambda d: d.__setitem__("host", nested(200))), "nested"),
    ("nested-far-too-deep", "[" * 100_000 + "]" * 100_000, "nested"),
    ("top-level-array", dumps([record()]), "JSON object"),
    ("truncated", RECORD_TEXT[: len(RECORD_TEXT) // 2], "JSON"),
    ("empty", "", "JSON"),
    ("not-json-toml", 'schema_version = 2\nrun_id = "x"\n', "JSON"),
    ("trailing-comma", text_sub('"host": "vm",', '"host": "vm",,'), "JSON"),
    (
        "identity-field-misspelled",
        changed(lambda d: d["identity"].__setitem__("serail", d["identity"].pop("serial"))),
        "did you mean 'serial'",
    ),
    (
        "unknown-top-level-claim",
        changed(lambda d: d.__setitem__("certified", "as new")),
        "certified",
    ),
    (
        "unknown-metric-field",
        changed(lambda d: d["tests"][0]["metrics"][0].__setitem__("verified", True)),
        "verified",
    ),
]
for name, text, word in RECORDS:
    add("records", f"{name}.json", text, word)
add(
    "records",
    "not-utf8.json",
    RECORD_TEXT.encode("utf-8").replace(b'"host": "vm"', b'"host": "v\xe9m"'),
    "UTF-8",
)
add("records", "utf16.json", RECORD_TEXT.encode("utf-16"), "UTF-8")


# --- key files ------------------------------------------------------------------------------------


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


GOOD = private_pem(private_key(7))
X25519 = X25519PrivateKey.from_private_bytes(bytes([9]) * 32)
KEYS: list[tuple[str, bytes, str]] = [
    # private keys (gpuhealth keys show --key-file F)
    ("private-truncated.key", GOOD[: len(GOOD) // 2], "PEM"),
    ("private-empty.key", b"", "PEM"),
    ("private-public-key-instead.key", public_pem(private_key(7)), "PEM"),
    (
        "private-x25519.key",
        X25519.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "Ed25519",
    ),
    ("private-crlf.key", GOOD.replace(b"\n", b"\r\n"), "PKCS#8"),
    ("private-trailing-text.key", GOOD + b"# my key\n", "PKCS#8"),
    ("private-not-utf8.key", b"\xff\xfe" + GOOD, "PEM"),
    ("private-huge.key", GOOD + b"\n" * (70 * 2**10), "bytes"),
    # public keys (gpuhealth keys pin F)
    ("public-truncated.pub", public_pem(private_key(8))[:60], "PEM"),
    ("public-private-key-instead.pub", private_pem(private_key(8)), "public key"),
    (
        "public-x25519.pub",
        X25519.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "Ed25519",
    ),
    ("public-not-utf8.pub", b"\xc3\x28" + public_pem(private_key(8)), "UTF-8"),
    ("public-short-fingerprint.pub", b"SHA256:0123456789abcdef\n", "public key"),
    ("public-base64-short.pub", b"AAAA\n", "public key"),
    ("public-huge.pub", public_pem(private_key(8)) * 2000, "bytes"),
    # pinned-keys stores (gpuhealth keys list, with the file as the pinned file): exit 6
    ("pinned-not-utf8", b"SHA256:" + b"0" * 32 + b"  # caf\xe9\n", "UTF-8"),
    ("pinned-short-fingerprint", b"SHA256:0123456789abcdef  # seller\n", "fingerprint"),
    ("pinned-pem-pasted", public_pem(private_key(8)), "fingerprint"),
    (
        "pinned-two-per-line",
        b"SHA256:" + b"a" * 32 + b" SHA256:" + b"b" * 32 + b"\n",
        "fingerprint",
    ),
    ("pinned-huge", (b"SHA256:" + b"c" * 32 + b"\n") * 30_000, "bytes"),
]
for name, data, word in KEYS:
    add("keys", name, data, word)


def write() -> None:
    lines = [
        "# The word each bad input's one-line error must name: the field, or what is wrong with",
        "# the file as a whole. Written by make_corpus.py; tests/test_bad_inputs.py reads it.",
        "",
    ]
    for kind, entries in corpus.items():
        folder = HERE / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        lines.append(f"[{kind}]")
        for name, data, word in entries:
            (folder / name).write_bytes(data)
            lines.append(f"{json.dumps(name)} = {json.dumps(word)}")
        lines.append("")
    (HERE / "expected.toml").write_text("\n".join(lines), encoding="utf-8")
    counts = ", ".join(f"{kind} {len(entries)}" for kind, entries in corpus.items())
    print(f"wrote {sum(len(e) for e in corpus.values())} files: {counts}")


if __name__ == "__main__":
    write()
