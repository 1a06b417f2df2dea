"""The run record: frozen dataclasses, versioned JSON round-trip in one place.

A run record holds everything measured on one card (identity, health counters before and after,
every repetition of every test, verification outcomes, telemetry) and, once judged, the analysis and
the grade. JSON is the canonical form; `record_to_json` / `record_from_json` are the only way in and
out, and `run_record_json_schema` gives the JSON Schema that validates it (shipped as
gpuhealth/data/run-record.schema.json, kept equal by a test).

Schema versions: 1 (gpuhealth 0.1.0) had no embedded rules; 2 (0.2.0) adds `rules`, the full text
of the policy and profile the record was judged under. A version-1 record is migrated when read
(`migrate`): it gains `rules = null` (and an empty `analysis.subsystems`: it was judged metric by
metric) and nothing else changes, so its judgement and measurements read exactly as written; its
signature is checked on the stored JSON, never on the migrated form.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from gpuhealth.errors import InputError

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)  # older ones are migrated when read

TestStatus = Literal["passed", "failed", "error", "skipped", "not_run"]
"""passed: measured and verified; failed: verification found wrong data; error: could not finish
(lost card, out of memory, time budget); skipped: not applicable to this card; not_run: never
started."""

GradeLetter = Literal["A", "B", "C", "D", "F", "INCOMPLETE"]
Severity = Literal["info", "minor", "major", "critical"]
Verdict = Literal["ok", "low", "very_low", "high", "no_reference"]
PrecheckStatus = Literal["ok", "warn", "fail", "unknown"]
Scalar = bool | int | float | str


@dataclass(frozen=True)
class CardIdentity:
    """Who the card is. None means the driver did not say (never guessed)."""

    name: str
    backend: str
    index: int = 0
    uuid: str | None = None
    serial: str | None = None
    board_part_number: str | None = None
    vbios: str | None = None
    inforom: str | None = None
    pci_bus_id: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    memory_total_bytes: int | None = None
    sm_count: int | None = None
    compute_capability: str | None = None
    memory_bus_width_bits: int | None = None
    max_sm_clock_mhz: float | None = None
    max_memory_clock_mhz: float | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    power_limit_default_w: float | None = None
    sim_card: str | None = None
    # PCI ids as NVML gives them (nvmlPciInfo_t), in hex: pciDeviceId is the 16-bit device id over
    # the 16-bit vendor id ("0x233010DE": NVIDIA's GH100 H100 SXM5), pciSubSystemId the board's
    # subsystem device and vendor ids. The highest power limit the card accepts
    # (nvmlDeviceGetPowerManagementLimitConstraints). Read since gpuhealth 0.2.0.
    pci_device_id: str | None = None
    pci_subsystem_id: str | None = None
    power_limit_max_w: float | None = None
    # --- PCIe and NVLink (issue 14) ---
    # The PCIe generation the GPU itself supports (nvmlDeviceGetGpuMaxPcieLinkGeneration);
    # pcie_gen_max is the most the card and the host's slot allow together.
    pcie_gen_gpu_max: int | None = None


@dataclass(frozen=True)
class RowRemapHistogram:
    """NVML's row-remapper bank histogram: banks by how many spare rows they have left."""

    max: int
    high: int
    partial: int
    low: int
    none: int


@dataclass(frozen=True)
class NvLinkReading:
    """One NVLink of the card at one moment (NVML). None = the driver would not say."""

    link: int
    active: bool | None = None
    version: int | None = None
    # data-link-layer error counters (nvmlNvLinkErrorCounter_t): replays, recoveries (the link
    # retrained), flit and data CRC errors
    replay_errors: int | None = None
    recovery_errors: int | None = None
    crc_flit_errors: int | None = None
    crc_data_errors: int | None = None


@dataclass(frozen=True)
class HealthCounters:
    """NVML health counters read at one moment. None = not supported or not readable."""

    ecc_enabled: bool | None = None
    ecc_volatile_corrected: int | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    row_remap_histogram: RowRemapHistogram | None = None
    pcie_gen_current: int | None = None
    pcie_width_current: int | None = None
    pcie_replay_count: int | None = None
    power_limit_w: float | None = None
    temperature_c: float | None = None
    temperature_slowdown_c: float | None = None
    temperature_shutdown_c: float | None = None
    memory_temperature_max_c: float | None = None
    energy_j: float | None = None
    clocks_event_reasons: int | None = None
    # ECC mode after the next reboot (NVML's pending mode); differs from ecc_enabled while a change
    # waits for the reboot. Lifetime uncorrectable counts by where they happened: card memory
    # (DRAM) and on-chip SRAM (caches, register file). Retired pages: pre-Ampere cards retire
    # memory pages where later cards remap rows (counts by cause; pending = needs a reboot).
    ecc_pending_enabled: bool | None = None
    ecc_aggregate_uncorrected_dram: int | None = None
    ecc_aggregate_uncorrected_sram: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    # --- NVLink (issue 14) ---
    # nvlink_status: "read" (nvlink holds every link the card has), "none" (the card has no
    # NVLink, or NVML says "not supported": not applicable), "unreadable" (NVML failed: the
    # checks were not made), None (a record from before gpuhealth read NVLink). The common link
    # speed in MB/s.
    nvlink_status: Literal["read", "none", "unreadable"] | None = None
    nvlink: tuple[NvLinkReading, ...] | None = None  # () with "none"; None unless read
    nvlink_speed_mbps: float | None = None
    # --- PCIe error counters (issue 14; names and classes in gpuhealth/pcieerrors.py) ---
    # pcie_errors_status: "read" (NVML answered every counter it offers), "not_supported" (it
    # offers none: older drivers, some boards; not judged), "unreadable" (NVML failed on at least
    # one: a check not made), None (a record from before gpuhealth read them). pcie_errors holds
    # every counter's count as NVML gives it (whether a count survives a driver reload NVML does
    # not document: only rises within one run are judged); None where NVML did not give it (not
    # supported, or failed when the status is "unreadable").
    pcie_errors_status: Literal["read", "not_supported", "unreadable"] | None = None
    pcie_errors: dict[str, int | None] | None = None


@dataclass(frozen=True)
class TelemetrySample:
    """One NVML sample; t_s is seconds since the run started (on the backend's clock)."""

    t_s: float
    temperature_c: float | None = None
    memory_temperature_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    utilization_pct: float | None = None
    clocks_event_reasons: int | None = None
    energy_j: float | None = None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str | None = None
    used_memory_bytes: int | None = None


@dataclass(frozen=True)
class XidEvent:
    t_s: float
    code: int
    description: str | None = None


@dataclass(frozen=True)
class Precheck:
    name: str
    status: PrecheckStatus
    message: str


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a test, with every timed repetition kept."""

    name: str
    unit: str
    values: tuple[float, ...]
    higher_is_better: bool = True


@dataclass(frozen=True)
class MemoryMismatch:
    """A 32-bit word that read back wrong. address is the device address of the word."""

    address: int
    expected: int
    actual: int
    pattern: str

    @property
    def bits(self) -> tuple[int, ...]:
        diff = self.expected ^ self.actual
        return tuple(b for b in range(32) if diff >> b & 1)


@dataclass(frozen=True)
class WrongResult:
    """A computed value that disagreed with its reference."""

    location: str
    expected: float | None = None
    actual: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Verification:
    """How a test's results were checked and what the check found."""

    method: str
    passed: bool
    checked: int
    mismatches: int
    max_relative_error: float | None = None
    bound: float | None = None
    memory_errors: tuple[MemoryMismatch, ...] = ()
    wrong_results: tuple[WrongResult, ...] = ()


@dataclass(frozen=True)
class TestResult:
    """One stress test as it ran: parameters, metrics, checks, telemetry, and how it ended."""

    __test__ = False  # not a pytest class

    name: str
    status: TestStatus
    started_s: float = 0.0
    duration_s: float = 0.0
    gpu_busy_s: float = 0.0
    time_budget_s: float = 0.0
    parameters: dict[str, Scalar] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    verifications: tuple[Verification, ...] = ()
    telemetry: tuple[TelemetrySample, ...] = ()
    message: str | None = None

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


@dataclass(frozen=True)
class ReferenceMetric:
    """What healthy cards of the model measure for one metric."""

    center: float
    spread: float
    n: int
    source: str
    higher_is_better: bool = True
    published_peak: float | None = None


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the card against its reference, with every number a buyer needs to see why."""

    test: str
    metric: str
    unit: str
    higher_is_better: bool
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    reference: ReferenceMetric | None = None
    z: float | None = None
    percentile: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    relative_deviation: float | None = None
    verdict: Verdict = "no_reference"


@dataclass(frozen=True)
class SubsystemScore:
    """One subsystem's performance against its model (gpuhealth/judge/composite.py): the mean
    log-ratio of its judged metrics, with every source of uncertainty kept (relative)."""

    name: str  # memory, fp32, tensor, sustained
    metrics: tuple[str, ...]  # the judged metrics it averages (test.metric)
    deficit: float  # 1 - e^(mean log-ratio): positive = slower than the model's centre
    deficit_low: float  # the deficit's one-sided lower confidence bound: at least this slow
    t: float  # against healthy cards of the model; negative = slower
    p_adjusted: float  # one-sided (Student t), Holm-adjusted over the subsystems
    between_rel: float  # healthy cards' spread
    centre_rel: float  # the reference centre's own error
    run_rel: float  # run-to-run variation of one card
    measure_rel: float  # this run's measurement error
    reference_cards: int
    verdict: Literal["ok", "low"] = "ok"


@dataclass(frozen=True)
class SoakSummary:
    duration_s: float
    iterations: int
    mismatched_iterations: int
    idle_temperature_c: float | None = None
    max_temperature_c: float | None = None
    plateau_temperature_c: float | None = None
    time_constant_s: float | None = None
    mean_power_w: float | None = None
    thermal_resistance_c_per_w: float | None = None
    reference_c_per_w: float | None = None
    max_memory_temperature_c: float | None = None
    slowdown_margin_c: float | None = None
    sm_clock_mean_mhz: float | None = None
    sm_clock_cv: float | None = None
    throttle_share: dict[str, float] = field(default_factory=dict)
    throughput_drift_pct: float | None = None
    stopped_early: str | None = None
    # Thermal resistance is fitted to the whole run's telemetry (gpuhealth/judge/thermal_fit.py):
    # thermal_resistance_c_per_w is set only when the fit is trusted; otherwise the refusal says
    # why it was not measured. The fit's 95 % range, slow time constant and RMS residual are kept
    # whenever there was a fit (a refused fit's range shows what the run could not tell apart).
    thermal_resistance_low_c_per_w: float | None = None
    thermal_resistance_high_c_per_w: float | None = None
    thermal_fit_time_constant_s: float | None = None
    thermal_fit_rms_c: float | None = None
    thermal_resistance_refusal: str | None = None
    memory_temperature_headroom_c: float | None = None  # the memory's limit minus its maximum
    # The reference the resistance was held to (gpuhealth/judge/thermal_reference.py) and the ratio
    # to it at the prediction's lower bound: the fit, run-to-run, rig and reference errors allowed.
    thermal_reference: str | None = None
    thermal_ratio_low: float | None = None


@dataclass(frozen=True)
class Finding:
    """A fact about the card's health, found by a test, a counter or the soak analysis."""

    code: str
    severity: Severity
    source: str
    message: str
    value: str | None = None
    reference: str | None = None
    measure: float | None = None  # the number policy thresholds compare (e.g. a ratio)
    # The statistics behind the message, for the detail (the message is in the buyer's words).
    detail: str | None = None
    # "code/source" of the finding that explains this one (gpuhealth/judge/causes.py): its reason is
    # told as part of that finding's, one reason per cause.
    cause: str | None = None

    @property
    def key(self) -> str:
        return f"{self.code}/{self.source}"


@dataclass(frozen=True)
class ProfileRef:
    key: str
    name: str
    source: str
    cards: int


@dataclass(frozen=True)
class Analysis:
    profile: ProfileRef | None
    comparisons: tuple[MetricComparison, ...]
    soak: SoakSummary | None
    findings: tuple[Finding, ...]
    energy_used_j: float | None = None
    gpu_busy_share: float | None = None
    subsystems: tuple[SubsystemScore, ...] = ()  # what the performance grade rests on


@dataclass(frozen=True)
class Reason:
    """Why a grade: the rule that fired, the measured value and the reference it was held to."""

    rule: str
    grade: GradeLetter
    message: str
    value: str | None = None
    reference: str | None = None
    detail: str | None = None  # the statistics behind the message
    # Reasons with the same cause, told as part of this one: "rule: message" each.
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grade:
    letter: GradeLetter
    disposition: str
    reasons: tuple[Reason, ...]
    policy: str
    policy_sha256: str


@dataclass(frozen=True)
class RulesFile:
    """A rules file (the grading policy or the reference profile) in full, as it was read."""

    name: str  # a policy's "name vVERSION", a profile's key
    sha256: str  # of the text's UTF-8 bytes: what `sha256sum FILE` prints for the file
    text: str
    # gpuhealth versions that shipped these exact bytes (gpuhealth/judge/shipped.py); empty: a
    # custom file. Written at grade time for the certificate; verify works it out again.
    shipped_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class JudgedUnder:
    """The rules a record was judged under, signed with it: a buyer trusts gpuhealth's shipped
    rules, not the seller's files, so verify judges the measurements again under both."""

    policy: RulesFile
    profile: RulesFile | None  # None: no profile (a model gpuhealth has no reference for)
    judged_by: str  # the gpuhealth version that judged it; its shipped rules are the default
    # The grade under that version's shipped policy and profile for this card's model, when the
    # record was judged under other rules; None when these are those rules.
    shipped_grade: Grade | None = None

    @property
    def custom(self) -> bool:
        return self.shipped_grade is not None


@dataclass(frozen=True)
class Signature:
    """An Ed25519 signature over the record's canonical bytes (gpuhealth/certificate/signing.py)."""

    algorithm: str  # "ed25519"
    public_key: str  # base64 of the raw 32-byte public key
    key_fingerprint: str  # "SHA256:" + hex of sha256(raw public key), first 32 hex digits
    value: str  # base64 of the signature over the canonical bytes
    signed_at: str  # ISO 8601 UTC
    # How the signed bytes are made: "rfc8785" (JSON Canonicalization Scheme, from 0.2.0); absent
    # in records signed by 0.1.0, whose bytes are Python's sorted compact JSON (signing.py).
    canonicalization: str | None = None


@dataclass(frozen=True)
class HistoryFact:
    """One thing the results database knew of the card that this run contradicts
    (gpuhealth/store/card_history.py): kind "identity" (the serial was stored with another UUID, or
    the UUID with another serial) or "counter" (a counter that never goes down on one card is lower
    than in the last stored run: an InfoROM reset or another card)."""

    kind: Literal["identity", "counter"]
    field: str  # identity.serial / identity.uuid, or the HealthCounters field
    stored: str  # the value the stored run holds
    found: str  # this run's value
    run_id: str  # the stored run it was compared with


@dataclass(frozen=True)
class StoredHistory:
    """What the results database said about this card when it was graded. checked=False: the
    database could not be read (`note` says why) and nothing was compared."""

    checked: bool
    database: str | None = None  # the database, password hidden
    prior_runs: int = 0  # stored runs of this serial or UUID before this run
    facts: tuple[HistoryFact, ...] = ()
    note: str | None = None


# --- resale readiness and the memory clear (issue 14) ---------------------------------------------
ReadinessStatus = Literal["ok", "not_default", "unreadable", "not_applicable", "site_policy"]
"""ok: at its factory default; not_default: changed (reset it with the item's command);
unreadable: the driver failed to answer (never ok); not_applicable: the card or driver does not
offer it (NVML "not supported"); site_policy: read and listed, no factory default to hold it to."""
ClearStatus = Literal["cleared", "failed", "not_cleared"]
"""cleared: every byte it reached read back zero; failed: some read back non-zero after the
overwrite (the card keeps data, or its memory is faulty); not_cleared: the clear did not run or
could not finish (note says why)."""


@dataclass(frozen=True)
class SettingReading:
    """One setting as a backend read it (not stored in the record: readiness.py turns it into a
    ReadinessItem). value and default are in words ("enabled", "sm 1980 MHz, memory 2619 MHz")."""

    key: str
    state: Literal["read", "not_supported", "unreadable"]
    value: str | None = None
    default: str | None = None  # the card's own factory default, where it reports one
    detail: str | None = None  # the driver's error, for an unreadable one


@dataclass(frozen=True)
class ReadinessItem:
    """A setting a buyer expects at its factory default, as read before the tests."""

    key: str  # ecc_mode, mig_mode, compute_mode, applications_clocks, locked_clocks, ...
    name: str
    value: str | None
    expected: str
    status: ReadinessStatus
    reset: str | None = None  # the command that puts it back (nvidia-smi ...)
    note: str | None = None


@dataclass(frozen=True)
class UnclearedWord:
    """A 32-bit word that read back non-zero after the clear wrote zero to it."""

    address: int  # device address of the word
    actual: int


@dataclass(frozen=True)
class MemoryClear:
    """The last step: every allocatable byte overwritten with zeros and read back."""

    status: ClearStatus
    method: str
    bytes_cleared: int = 0
    memory_total_bytes: int | None = None
    fraction: float | None = None  # bytes_cleared / memory_total_bytes
    seconds: float | None = None  # device time of the overwrite and the read-back
    words_not_zero: int = 0
    first_not_zero: tuple[UnclearedWord, ...] = ()
    note: str | None = None  # why not cleared, or what failed


@dataclass(frozen=True)
class RunRecord:
    schema_version: int
    tool_version: str
    run_id: str
    started_at: str
    host: str
    backend: str
    preset: str
    identity: CardIdentity
    finished_at: str | None = None
    complete: bool = False
    interrupted: str | None = None
    counters_before: HealthCounters | None = None
    counters_after: HealthCounters | None = None
    prechecks: tuple[Precheck, ...] = ()
    processes: tuple[ProcessInfo, ...] = ()
    tests: tuple[TestResult, ...] = ()
    xid_events: tuple[XidEvent, ...] = ()
    wall_time_s: float | None = None
    analysis: Analysis | None = None
    grade: Grade | None = None
    rules: JudgedUnder | None = None  # set with the grade (None in migrated version-1 records)
    signature: Signature | None = None  # signed with the rest, except signature.value
    # what the results database knew of the card when it was judged; None: not looked up
    stored_history: StoredHistory | None = None
    # Issue 14 (None in records written before them): the settings read before the tests
    # (readiness.py); the memory clear after them; the tests asked for with --tests (None: all);
    # the soak length asked for with --soak (None: the preset's).
    readiness: tuple[ReadinessItem, ...] | None = None
    memory_clear: MemoryClear | None = None
    tests_selected: tuple[str, ...] | None = None
    soak_duration_s: float | None = None

    def test(self, name: str) -> TestResult | None:
        return next((t for t in self.tests if t.name == name), None)


@cache
def _adapter() -> TypeAdapter[RunRecord]:
    _forbid_unknown_fields()
    return TypeAdapter(RunRecord)


def _forbid_unknown_fields() -> None:
    """A key no version of the record has is refused with its name, never silently dropped: a
    misspelled field would otherwise read as "not measured", and a field a tool does not know
    would look certified to a reader that shows the file's JSON."""
    pending: list[type] = [RunRecord]
    seen: set[type] = set()
    while pending:
        cls = pending.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.add(cls)
        cls.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        for hint in typing.get_type_hints(cls).values():
            pending += [t for t in _types_in(hint) if isinstance(t, type)]


def _types_in(hint: object) -> list[object]:
    args = typing.get_args(hint)
    return [hint, *(t for arg in args for t in _types_in(arg))]


def record_to_json(record: RunRecord) -> str:
    """The canonical JSON text of a record (fixed field order, shortest round-trip floats)."""
    data = _adapter().dump_python(record, mode="json")
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def record_from_json(text: str, source: str = "run record") -> RunRecord:
    """Parse and validate a record; a bad one raises InputError naming the field and expectation
    (gpuhealth.jsonfile: no duplicate keys, NaN or Infinity, nesting within reason)."""
    from gpuhealth.jsonfile import loads

    return record_from_data(loads(text, source), source)


def record_from_data(data: object, source: str = "run record") -> RunRecord:
    """Validate an already parsed record (json.loads of run.json): InputError when it is bad.

    Strict, as JSON spells types: no "300" for a number, no true for a number, no 1 for true."""
    if not isinstance(data, dict):
        raise InputError(source, None, "expected a JSON object (a gpuhealth run record)")
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        raise InputError(
            source,
            "schema_version",
            f"expected one of {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}, found {version!r}"
            + (" (written by a newer gpuhealth)" if _newer(version) else ""),
        )
    try:
        payload = json.dumps(migrate(data), allow_nan=False)
    except ValueError:  # data parsed by a reader that took NaN or Infinity
        raise InputError(source, None, "expected finite numbers (found NaN or Infinity)") from None
    try:
        return _adapter().validate_json(payload, strict=True)
    except ValidationError as exc:
        raise validation_error_to_input_error(exc, source) from exc


def _newer(version: object) -> bool:
    return isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A parsed record of any readable schema version as the current version's JSON data."""
    if data.get("schema_version") == 1:
        # 1 -> 2: the embedded rules are new; a version-1 record was judged under rules it did
        # not record, so it has none (verify says what that means for it).
        data = {**data, "schema_version": 2, "rules": None}
        if isinstance(data.get("analysis"), dict):  # judged per metric then, not per subsystem
            data["analysis"] = {**data["analysis"], "subsystems": []}
    return data


def validation_error_to_input_error(exc: ValidationError, source: str) -> InputError:
    """Turn pydantic's report into one line: the first bad field's path and what was expected."""
    errors = exc.errors()
    # A misspelled key also makes the real one "missing": report the misspelling, with a hint.
    unknown = ("extra_forbidden", "unexpected_keyword_argument")
    first = next((e for e in errors if e["type"] in unknown), errors[0])
    loc = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    path = ".".join(loc)
    if first["type"] in unknown:
        known = _field_names_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "not a field of a gpuhealth run record"
        return InputError(source, path or None, f"unknown field ({hint})")
    message = first["msg"]
    got = first.get("input")
    if first["type"] != "missing" and not isinstance(got, dict | list):
        message += f" (got {got!r})"
    return InputError(source, path or None, message)


def _field_names_at(path: list[str]) -> list[str]:
    """The field names of the record's dataclass at path ("identity", "tests.0.metrics.1")."""
    current: object = RunRecord
    for part in path:
        if part.isdigit():
            continue
        if not (isinstance(current, type) and dataclasses.is_dataclass(current)):
            return []
        hint = typing.get_type_hints(current).get(part)
        current = next(
            (t for t in _types_in(hint) if isinstance(t, type) and dataclasses.is_dataclass(t)),
            None,
        )
    if isinstance(current, type) and dataclasses.is_dataclass(current):
        return [f.name for f in dataclasses.fields(current)]
    return []


def run_record_json_schema() -> dict[str, Any]:
    schema = _adapter().json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://gpuhealth.dev/schema/run-record-v{SCHEMA_VERSION}.json"
    return schema
