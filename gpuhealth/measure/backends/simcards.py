"""Simulated card definitions: the built-in models and the user's card spec files (TOML).

A built-in model (gpuhealth/data/simcards/<key>.toml) describes a healthy card of that model:
identity, device properties, performance, power and a thermal model fitted to measured telemetry.
A card spec file picks a model, may override identity fields, and injects faults:

    model = "h100-sxm5-80gb"
    serial = "SIM-0001"
    [identity]                        # what it reports, where that differs from the model
    pci_device_id = "0x233110DE"
    [faults]
    bandwidth_scale = 0.85
    stuck_bits = [{ address = 0x1F000, bit = 3, value = 0 }]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from gpuhealth import tomlpos
from gpuhealth.datafiles import StrictModel, load_toml_model, read_toml_with_text, validate
from gpuhealth.errors import InputError
from gpuhealth.limits import (
    BandwidthGBs,
    BusWidthBits,
    ClockMHz,
    Count,
    MemoryBytes,
    PowerW,
    Probability,
    ProcessId,
    RateScale,
    Seed,
    SmCount,
    TemperatureC,
    ThermalResistanceCPerW,
    ThroughputTflops,
    TimeConstantS,
    not_bool,
    ordered,
)
from gpuhealth.pcieerrors import PcieErrorName
from gpuhealth.resources import DATA_DIR

SIMCARDS_DIR = DATA_DIR / "simcards"
TEST_NAMES = ("pcie", "bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak")
TestName = Literal["pcie", "bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak"]


PCI_ID_PATTERN = r"^0[xX][0-9A-Fa-f]{8}$"  # as NVML gives it: "0x233010DE"


class SimIdentity(StrictModel):
    name: str
    serial: str
    uuid: str
    board_part_number: str
    vbios: str
    inforom: str
    pci_bus_id: str
    driver_version: str
    cuda_driver_version: str
    pci_device_id: str = Field(pattern=PCI_ID_PATTERN)
    pci_subsystem_id: str = Field(pattern=PCI_ID_PATTERN)


class IdentityOverrides(StrictModel):
    """What a card spec's card reports about itself where it differs from its model: a
    relabelled (PCI ids, board part number), cut-down (SM count, bus width) or reflashed (VBIOS,
    clocks, power limits) card. A reported SM count is also the SMs that compute unless
    faults.working_sm_count says otherwise (a card that lies about its SMs); the other fields
    change only what the card reports, not how it runs."""

    board_part_number: str | None = None
    vbios: str | None = None
    pci_device_id: str | None = Field(default=None, pattern=PCI_ID_PATTERN)
    pci_subsystem_id: str | None = Field(default=None, pattern=PCI_ID_PATTERN)
    sm_count: SmCount | None = None
    memory_bus_width_bits: BusWidthBits | None = None
    max_sm_clock_mhz: ClockMHz | None = None
    max_memory_clock_mhz: ClockMHz | None = None
    power_limit_default_w: PowerW | None = None
    power_limit_max_w: PowerW | None = None

    _power_limits_ordered = ordered("power_limit_default_w", "power_limit_max_w")


class SimDevice(StrictModel):
    memory_total_bytes: MemoryBytes
    memory_reserved_bytes: int = Field(ge=0)
    sm_count: SmCount
    compute_capability: tuple[int, int]
    l2_bytes: int = Field(gt=0)
    max_threads_per_sm: int = Field(gt=0)
    max_sm_clock_mhz: ClockMHz
    max_memory_clock_mhz: ClockMHz
    memory_bus_width_bits: BusWidthBits
    pcie_gen_max: int = Field(ge=1, le=6)
    pcie_width_max: int = Field(ge=1, le=32)
    row_remap_banks: int = Field(ge=0)
    # Issue 14, assumed (no PCIe copy was measured on these cards yet): the share of the link's
    # theoretical rate a healthy card's pinned copies reach one way, and each way when both run.
    pcie_copy_share: float = Field(default=0.87, gt=0, le=1)
    pcie_duplex_share: float = Field(default=0.80, gt=0, le=1)

    @field_validator("memory_reserved_bytes")
    @classmethod
    def _reserved_within_total(cls, reserved: int, info: ValidationInfo) -> int:
        total = info.data.get("memory_total_bytes")
        if total is not None and reserved >= total:
            raise ValueError(f"expected less than memory_total_bytes ({total}), got {reserved}")
        return reserved


class SimPerformance(StrictModel):
    copy_gbs: BandwidthGBs
    scale_gbs: BandwidthGBs
    add_gbs: BandwidthGBs
    triad_gbs: BandwidthGBs
    read_gbs: BandwidthGBs
    memtest_gbs: BandwidthGBs
    fp32_tflops: ThroughputTflops
    mma_tflops: ThroughputTflops
    tensor_gemm_tflops: ThroughputTflops
    gemm_fp16_tflops: ThroughputTflops
    gemm_fp16_sustained_tflops: ThroughputTflops
    gemm_fp32_tflops: ThroughputTflops
    noise_rel: float = Field(ge=0, le=0.5)


class SimPower(StrictModel):
    idle_w: PowerW
    default_limit_w: PowerW
    max_limit_w: PowerW  # the highest limit the card accepts
    stream_w: PowerW
    memtest_w: PowerW
    fma_w: PowerW
    mma_w: PowerW
    tensor_gemm_w: PowerW
    gemm_fp16_w: PowerW
    gemm_fp32_w: PowerW

    _limits_ordered = ordered("idle_w", "default_limit_w")
    _max_limit_ordered = ordered("default_limit_w", "max_limit_w")


class SimThermal(StrictModel):
    slowdown_c: TemperatureC
    shutdown_c: TemperatureC
    memory_max_c: TemperatureC
    gpu_ambient_c: TemperatureC
    gpu_r_fast_c_per_w: ThermalResistanceCPerW
    gpu_tau_fast_s: TimeConstantS
    gpu_r_slow_c_per_w: ThermalResistanceCPerW
    gpu_tau_slow_s: TimeConstantS
    memory_ambient_c: TemperatureC
    memory_r_fast_c_per_w: ThermalResistanceCPerW
    memory_tau_fast_s: TimeConstantS
    memory_r_slow_c_per_w: ThermalResistanceCPerW
    memory_tau_slow_s: TimeConstantS

    _shutdown_above_slowdown = ordered("slowdown_c", "shutdown_c", strict=True)
    _gpu_ambient_below_slowdown = ordered(
        "gpu_ambient_c", "slowdown_c", strict=True, on="gpu_ambient_c"
    )
    _memory_ambient_below_max = ordered(
        "memory_ambient_c", "memory_max_c", strict=True, on="memory_ambient_c"
    )


class SimModel(StrictModel):
    """A built-in healthy card of one model."""

    key: str
    identity: SimIdentity
    device: SimDevice
    performance: SimPerformance
    power: SimPower
    thermal: SimThermal


class WordBit(StrictModel):
    """One bit of the 32-bit word at a byte address."""

    address: int = Field(ge=0, description="byte address of a 32-bit word (a multiple of 4)")
    bit: int = Field(ge=0, le=31)

    @field_validator("address")
    @classmethod
    def _word_aligned(cls, address: int) -> int:
        if address % 4:
            raise ValueError("expected the byte address of a 32-bit word (a multiple of 4)")
        return address


class StuckBit(WordBit):
    value: Literal[0, 1]

    _value_not_bool = not_bool("value")  # Literal[0, 1] alone takes true for 1


class FlakyBit(WordBit):
    probability: Probability = Field(gt=0, description="chance that a read returns it flipped")


# The sim computes a product's corner block of GEMM_BLOCK rows x cols (sim.py) and holds the first
# WINDOW_BYTES of a large buffer densely: a wrong element is placed where the sim computes.
SIM_GEMM_BLOCK = (8, 64)
SIM_WINDOW_BYTES = 1 << 20
SIM_WINDOW_F32 = SIM_WINDOW_BYTES // 4


class WrongResults(StrictModel):
    """A unit that computes wrong. By default every compute launch (FMA and MMA loops, every GEMM)
    may hit it, somewhere at random; the fields below pin where, so that a fault only one stress
    test's verification can catch proves that verification (tests/test_verifications.py)."""

    rate: Probability = Field(gt=0, description="chance that a compute launch returns a bad value")
    sm: int = Field(default=7, ge=0, lt=1024, description="the SM that computes wrong")
    # Only launches during this test go wrong (None: every compute test).
    test: TestName | None = None
    # The thread within its block (the lane) whose FMA / MMA result comes back wrong; only the
    # per-thread kernels (fp32's FMA loop, fp16_tensor's MMA loop) go wrong. 1024: CUDA's most
    # threads per block (a lane beyond a launch's block wraps round).
    lane: int | None = Field(default=None, ge=0, lt=1024)
    # The [row, col] of a GEMM product that comes back wrong; only GEMMs go wrong. Within the
    # corner block the sim computes (SIM_GEMM_BLOCK): a real check compares every element.
    element: tuple[int, int] | None = None
    # The element a STREAM kernel (copy, scale, add, triad) writes wrong; only stream kernels go
    # wrong (never without this field). Within the sim's dense window of an array.
    index: int | None = Field(default=None, ge=0, lt=SIM_WINDOW_F32)
    # Only the soak's iteration k (0-based, as its verification numbers them) goes wrong: silent
    # data corruption under load that a check of one product would not see. 100000: ~14 h of 0.5 s
    # iterations, longer than any preset's soak.
    iteration: int | None = Field(default=None, ge=0, le=100_000)

    @field_validator("element")
    @classmethod
    def _element_in_block(cls, element: tuple[int, int] | None) -> tuple[int, int] | None:
        rows, cols = SIM_GEMM_BLOCK
        if element is not None and not (0 <= element[0] < rows and 0 <= element[1] < cols):
            raise ValueError(
                f"expected [row, col] with row below {rows} and col below {cols} (the block the "
                f"sim computes), got {list(element)}"
            )
        return element

    @field_validator("iteration")
    @classmethod
    def _iteration_of_the_soak(cls, iteration: int | None, info: ValidationInfo) -> int | None:
        if iteration is not None and info.data.get("test") != "soak":
            raise ValueError('expected test = "soak" with an iteration (only the soak iterates)')
        return iteration

    @field_validator("index")
    @classmethod
    def _one_place(cls, index: int | None, info: ValidationInfo) -> int | None:
        given = [k for k in ("lane", "element") if info.data.get(k) is not None]
        if index is not None:
            given.append("index")
        if len(given) > 1:
            raise ValueError(f"expected at most one of lane, element, index; got {given}")
        return index


class RemappedRows(StrictModel):
    correctable: Count = 0
    uncorrectable: Count = 0
    pending: bool = False
    failure: bool = False


class RetiredPages(StrictModel):
    """Page retirement, as cards before Ampere report it instead of remapped rows."""

    sbe: Count = Field(default=0, description="pages retired for repeated single-bit errors")
    dbe: Count = Field(default=0, description="pages retired for a double-bit error")
    pending: bool = False


class OtherProcess(StrictModel):
    pid: ProcessId = 4242
    name: str = "python3"
    used_memory_mib: int = Field(default=2048, ge=0)


class XidAt(StrictModel):
    test: TestName
    code: int = Field(gt=0)


class SimSettings(StrictModel):
    """Settings a buyer expects at factory defaults (readiness.py); the defaults are a healthy
    card's. Clocks in MHz; None: not set (application clocks at the card's default)."""

    mig_enabled: bool = False
    compute_mode: Literal["default", "exclusive process", "prohibited"] = "default"
    applications_clocks_mhz: tuple[ClockMHz, ClockMHz] | None = None  # (sm, memory)
    locked_sm_clocks_mhz: tuple[ClockMHz, ClockMHz] | None = None  # (min, max)
    locked_memory_clocks_mhz: tuple[ClockMHz, ClockMHz] | None = None
    persistence_mode: bool = True
    # "not supported": the driver does not offer it (NVML answers so)
    confidential_computing: Literal["off", "on", "not supported"] = "off"

    @property
    def sm_clock_cap_mhz(self) -> float | None:
        """The SM clock these settings hold the card to under load (None: its own boost)."""
        return _lowest(self.locked_sm_clocks_mhz, 1, self.applications_clocks_mhz, 0)

    @property
    def memory_clock_cap_mhz(self) -> float | None:
        """The memory clock these settings hold the card to (None: its own)."""
        return _lowest(self.locked_memory_clocks_mhz, 1, self.applications_clocks_mhz, 1)

    @field_validator("locked_sm_clocks_mhz", "locked_memory_clocks_mhz")
    @classmethod
    def _min_not_above_max(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        if pair is not None and pair[0] > pair[1]:
            raise ValueError(
                f"expected [min, max] with min at most max, got [{pair[0]:g}, {pair[1]:g}]"
            )
        return pair


def _lowest(
    locked: tuple[float, float] | None, locked_at: int, app: tuple[float, float] | None, app_at: int
) -> float | None:
    """The lower of a locked range's maximum and an application clock, where either is set."""
    caps = [pair[at] for pair, at in ((locked, locked_at), (app, app_at)) if pair is not None]
    return min(caps, default=None)


class UnclearedRegion(StrictModel):
    """Memory whose words keep stale data when the clear writes zeros to them (writes lost)."""

    address: int = Field(ge=0, description="byte address of its first 32-bit word")
    nbytes: int = Field(default=4, gt=0, le=1 << 30)

    @field_validator("address")
    @classmethod
    def _word_aligned(cls, address: int) -> int:
        if address % 4:
            raise ValueError("expected the byte address of a 32-bit word (a multiple of 4)")
        return address


Unreadable = Literal[
    "ecc_enabled",
    "ecc_volatile_corrected",
    "ecc_volatile_uncorrected",
    "ecc_aggregate_corrected",
    "ecc_aggregate_uncorrected",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remapped_rows_pending",
    "remapped_rows_failure",
    "row_remap_histogram",
    "pcie_gen_current",
    "pcie_width_current",
    "pcie_replay_count",
    "power_limit_w",
    "memory_temperature_max_c",
    "clocks_event_reasons",
    "memory_temperature_c",
    "ecc_pending_enabled",
    "ecc_aggregate_uncorrected_dram",
    "ecc_aggregate_uncorrected_sram",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "retired_pages_pending",
    # NVLink state and error counters (issue 14): read as "unreadable", never healthy
    "nvlink_state",
    # PCIe error counters (issue 14): the field-value query fails, "unreadable"
    "pcie_errors",
    # identity fields
    "pcie_gen_gpu_max",
    "pcie_gen_max",
    "pcie_width_max",
    "pci_device_id",
    "pci_subsystem_id",
    "board_part_number",
    "vbios",
    "memory_bus_width_bits",
    "max_sm_clock_mhz",
    "max_memory_clock_mhz",
    "power_limit_default_w",
    "power_limit_max_w",
    # readiness settings (readiness.SETTING_KEYS): the driver's query fails
    "mig_mode",
    "compute_mode",
    "applications_clocks",
    "locked_clocks",
    "persistence_mode",
    "confidential_computing",
]


class Faults(StrictModel):
    bandwidth_scale: RateScale = 1.0
    fp32_scale: RateScale = 1.0
    fp16_scale: RateScale = 1.0
    stuck_bits: tuple[StuckBit, ...] = ()
    flaky_bits: tuple[FlakyBit, ...] = ()
    wrong_results: WrongResults | None = None
    remapped_rows: RemappedRows = RemappedRows()
    ecc_uncorrected: Count = Field(default=0, description="uncorrectable ECC errors during the run")
    ecc_corrected: Count = Field(default=0, description="correctable ECC errors during the run")
    ecc_enabled: bool = True
    # ECC mode after the next reboot, where a change waits for it (None: no change pending)
    ecc_pending_enabled: bool | None = None
    sram_uncorrected: Count = Field(
        default=0, description="uncorrectable on-chip (SRAM) ECC errors in the history"
    )
    # None: the card does not retire pages (Ampere and later remap rows; NVML answers "not
    # supported"). A card before Ampere: set it, and list the remapped_rows_* fields and
    # row_remap_histogram as unreadable.
    retired_pages: RetiredPages | None = None
    pcie_width: int | None = Field(default=None, ge=1, le=32)
    pcie_gen: int | None = Field(default=None, ge=1, le=6)
    # 0.1: a card ten times better cooled than its model is a typo; 10: no heat sink at all
    thermal_resistance_scale: float = Field(default=1.0, ge=0.1, le=10)
    # The memory's own cooling (HBM stacks under the same cold plate, their thermal pads): scales
    # the memory temperature's rise above ambient (memory_temperature_high). 0.1-10 as for
    # thermal_resistance_scale.
    memory_thermal_resistance_scale: float = Field(default=1.0, ge=0.1, le=10)
    # The board asserts hardware slowdown under load (NVML's HW_SLOWDOWN clocks-event reason: a
    # failing power supply or board sensor). Only the reason bit: the clocks stay as the power
    # limit sets them, so that the finding can be seen on its own.
    hardware_slowdown: bool = False
    # PCIe replays (link-level retransmissions) counted while memory is exercised: a marginal
    # link, riser or slot. The count a run adds to NVML's replay counter.
    pcie_replays: Count = 0
    power_limit_w: PowerW | None = None
    lost_at: TestName | None = None
    # The card stops answering during that test: a kernel that never returns (the fleet
    # supervisor's watchdog must kill the worker).
    hang_at: TestName | None = None
    other_process: OtherProcess | bool | None = None
    xid: tuple[XidAt, ...] = ()
    # Readings the simulated driver answers "not supported" (None): health counters and identity
    # fields by their name, telemetry as clocks_event_reasons or memory_temperature_c.
    unreadable: tuple[Unreadable, ...] = ()
    # SMs that compute, where fewer than the card reports (a cut-down die that reports the full
    # count): every compute rate scales by working_sm_count / the model's SM count. None: the SMs
    # the card reports ([identity] sm_count, else the model's).
    working_sm_count: SmCount | None = None
    # Between-card variation of a healthy population (relative offset of every rate).
    card_offset_rel: float = Field(default=0.0, ge=-0.5, le=0.5)
    # Settings away from their factory defaults (readiness); a region the memory clear cannot
    # overwrite (its words read back stale data, not zero).
    settings: SimSettings = SimSettings()
    uncleared: UnclearedRegion | None = None
    # --- PCIe copies and NVLink (issue 14) ---
    # Copies over the PCIe link at this share of a healthy card's rate at full width (a flaky
    # riser, a slot that retrains: slow copies at full width).
    pcie_copy_scale: RateScale = 1.0
    # Every copy in that direction lands with this byte flipped (a byte offset within the sim's
    # dense window: the first MiB of a copy).
    pcie_corrupt_byte: int | None = Field(default=None, ge=0, lt=SIM_WINDOW_BYTES)
    pcie_corrupt_direction: Literal["h2d", "d2h"] = "h2d"
    # Not a fault: the NVLinks the card's driver reports (0: none, as NVML in the VMs the
    # models were recorded in). Then links that are down, and flit CRC errors on the first active
    # link that appear once the run starts.
    nvlink_links: int = Field(default=0, ge=0, le=36)
    nvlink_down: tuple[int, ...] = ()
    nvlink_errors: Count = 0
    # PCIe error counters (gpuhealth/pcieerrors.py) that rise once the card is at work, by name
    # and rise: { bad_tlp = 3, fatal = 1 } (a marginal link, riser or slot). Not a fault: False
    # makes the driver answer "not supported" for every one of them (older drivers, some boards).
    pcie_errors: dict[PcieErrorName, Count] = Field(default_factory=dict)
    pcie_errors_supported: bool = True

    @field_validator("nvlink_down")
    @classmethod
    def _links_exist(cls, down: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        links = info.data.get("nvlink_links", 0)
        wrong = [link for link in down if not 0 <= link < links]
        if wrong:
            raise ValueError(f"expected link numbers below nvlink_links ({links}), got {wrong}")
        return down

    @field_validator("nvlink_errors")
    @classmethod
    def _errors_need_links(cls, errors: int, info: ValidationInfo) -> int:
        links, down = info.data.get("nvlink_links", 0), info.data.get("nvlink_down", ())
        if errors and links - len(set(down or ())) <= 0:
            raise ValueError("expected an active NVLink (nvlink_links above the links down)")
        return errors


class SimRig(StrictModel):
    """The chassis the card sits in: not the card, but in every reading of every card in it."""

    # The rig's airflow: scales the heat sink's (slow stage's) resistance of every card in it.
    heatsink_scale: float = Field(default=1.0, ge=0.5, le=3)
    # A mode slower than the thermal fit's slow stage (the chassis air and fans warming up): it
    # adds chassis_c_per_w x power at steady state, reached with time constant chassis_tau_s, so
    # a longer soak reads a higher resistance and the fit does not see why.
    chassis_c_per_w: float = Field(default=0.0, ge=0, le=0.2)
    chassis_tau_s: float = Field(default=600.0, ge=10, le=36000)


class CardSpec(StrictModel):
    """A user's card spec file."""

    model: str
    serial: str | None = None
    uuid: str | None = None
    name: str | None = None
    seed: Seed = 0
    # Real seconds slept per simulated device second (0: as fast as the CPU allows). With it a
    # card's wall time is dominated by its device time, as on a real GPU (fleet tests, benchmarks).
    wall_time_scale: float = Field(default=0.0, ge=0, le=10)
    identity: IdentityOverrides = IdentityOverrides()
    faults: Faults = Faults()
    rig: SimRig = SimRig()


class SimCard(StrictModel):
    """A ready-to-run simulated card: a model, its identity overrides, faults and a noise seed."""

    model: SimModel
    serial: str
    uuid: str
    name: str
    seed: int
    faults: Faults
    source: str
    wall_time_scale: float = 0.0
    identity: IdentityOverrides = IdentityOverrides()
    rig: SimRig = SimRig()

    @property
    def sm_count(self) -> int:
        """The SMs the card reports (CUDA's multiProcessorCount)."""
        return self.identity.sm_count or self.model.device.sm_count

    @property
    def working_sm_share(self) -> float:
        """The share of the model's SMs that compute: what the compute rates scale by."""
        working = self.faults.working_sm_count or self.sm_count
        return working / self.model.device.sm_count


def builtin_models() -> list[str]:
    return sorted(p.stem for p in SIMCARDS_DIR.glob("*.toml"))


def load_model(key: str) -> SimModel:
    path = SIMCARDS_DIR / f"{key}.toml"
    if not path.is_file():
        raise InputError(
            "--sim-card",
            None,
            f"no built-in sim card {key!r} (expected one of: "
            + ", ".join(builtin_models())
            + ", or the path of a card spec .toml file)",
        )
    return load_toml_model(SimModel, path)


def load_card(name_or_path: str) -> SimCard:
    """A built-in model by key (healthy card) or a card spec file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        data, text = read_toml_with_text(path)
        spec = validate(CardSpec, data, str(path), text)
        if spec.model not in builtin_models():
            raise InputError(
                str(path),
                "model",
                f"expected a built-in sim card ({', '.join(builtin_models())}), got {spec.model!r}",
                line=tomlpos.line_of(text, ("model",)),
            )
        source = str(path)
        model = load_model(spec.model)
        _check_against_model(spec, model, text, source)
    else:
        spec = CardSpec(model=name_or_path)
        source = f"built-in {name_or_path}"
        model = load_model(spec.model)
    return SimCard(
        model=model,
        serial=spec.serial or model.identity.serial,
        uuid=spec.uuid or model.identity.uuid,
        name=spec.name or model.identity.name,
        seed=spec.seed,
        faults=spec.faults,
        source=source,
        wall_time_scale=spec.wall_time_scale,
        identity=spec.identity,
        rig=spec.rig,
    )


def _check_against_model(spec: CardSpec, model: SimModel, text: str, source: str) -> None:
    """Faults the card's model cannot have: a bit beyond the memory a test can reach (it would
    never fire), more SMs or a wider link than the die has, a power limit above the card's."""
    device, faults = model.device, spec.faults
    reachable = device.memory_total_bytes - device.memory_reserved_bytes
    for kind in ("stuck_bits", "flaky_bits"):
        for index, bit in enumerate(getattr(faults, kind)):
            if bit.address + 4 > reachable:
                raise _model_error(
                    source,
                    text,
                    ("faults", kind, index, "address"),
                    f"expected a byte address within the card's memory (below {reachable:#x}: "
                    f"{spec.model} less what the driver reserves), got {bit.address:#x}",
                )
    region = faults.uncleared
    if region is not None and region.address + region.nbytes > reachable:
        raise _model_error(
            source,
            text,
            ("faults", "uncleared", "address"),
            f"expected a region within the card's memory (below {reachable:#x}), got "
            f"{region.address:#x} + {region.nbytes} bytes",
        )
    limits: list[tuple[tuple[str | int, ...], float | None, float, str]] = [
        (("faults", "working_sm_count"), faults.working_sm_count, device.sm_count, "SM count"),
        (("faults", "pcie_width"), faults.pcie_width, device.pcie_width_max, "pcie_width_max"),
        (("faults", "pcie_gen"), faults.pcie_gen, device.pcie_gen_max, "pcie_gen_max"),
        (("faults", "power_limit_w"), faults.power_limit_w, model.power.max_limit_w, "max_limit_w"),
        # copies cannot outrun the link: the model's copies reach pcie_copy_share of it
        (
            ("faults", "pcie_copy_scale"),
            faults.pcie_copy_scale,
            round(1 / device.pcie_copy_share, 3),
            "PCIe copy scale (its copies at the link's theoretical rate)",
        ),
    ]
    if faults.wrong_results is not None:
        limits.append(
            (
                ("faults", "wrong_results", "sm"),
                faults.wrong_results.sm,
                device.sm_count - 1,
                "last SM",
            )
        )
    for where, value, most, what in limits:
        if value is not None and value > most:
            raise _model_error(
                source,
                text,
                where,
                f"expected at most the model's {what} ({most:g} on {spec.model}), got {value:g}",
            )


def _model_error(source: str, text: str, where: tuple[str | int, ...], expected: str) -> InputError:
    field = ".".join(str(part) for part in where)
    return InputError(source, field, expected, line=tomlpos.line_of(text, where))
