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

from pydantic import Field, field_validator

from gpuhealth import tomlpos
from gpuhealth.datafiles import StrictModel, load_toml_model, read_toml_with_text, validate
from gpuhealth.errors import InputError
from gpuhealth.resources import DATA_DIR

SIMCARDS_DIR = DATA_DIR / "simcards"
TEST_NAMES = ("bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak")
TestName = Literal["bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak"]


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
    sm_count: int | None = Field(default=None, gt=0)
    memory_bus_width_bits: int | None = Field(default=None, gt=0)
    max_sm_clock_mhz: float | None = Field(default=None, gt=0)
    max_memory_clock_mhz: float | None = Field(default=None, gt=0)
    power_limit_default_w: float | None = Field(default=None, gt=0)
    power_limit_max_w: float | None = Field(default=None, gt=0)


class SimDevice(StrictModel):
    memory_total_bytes: int = Field(gt=0)
    memory_reserved_bytes: int = Field(ge=0)
    sm_count: int = Field(gt=0)
    compute_capability: tuple[int, int]
    l2_bytes: int = Field(gt=0)
    max_threads_per_sm: int = Field(gt=0)
    max_sm_clock_mhz: float = Field(gt=0)
    max_memory_clock_mhz: float = Field(gt=0)
    memory_bus_width_bits: int = Field(gt=0)
    pcie_gen_max: int = Field(ge=1, le=6)
    pcie_width_max: int = Field(ge=1, le=32)
    row_remap_banks: int = Field(ge=0)


class SimPerformance(StrictModel):
    copy_gbs: float = Field(gt=0)
    scale_gbs: float = Field(gt=0)
    add_gbs: float = Field(gt=0)
    triad_gbs: float = Field(gt=0)
    read_gbs: float = Field(gt=0)
    memtest_gbs: float = Field(gt=0)
    fp32_tflops: float = Field(gt=0)
    mma_tflops: float = Field(gt=0)
    tensor_gemm_tflops: float = Field(gt=0)
    gemm_fp16_tflops: float = Field(gt=0)
    gemm_fp16_sustained_tflops: float = Field(gt=0)
    gemm_fp32_tflops: float = Field(gt=0)
    noise_rel: float = Field(ge=0, le=0.5)


class SimPower(StrictModel):
    idle_w: float = Field(gt=0)
    default_limit_w: float = Field(gt=0)
    max_limit_w: float = Field(gt=0)  # the highest limit the card accepts
    stream_w: float = Field(gt=0)
    memtest_w: float = Field(gt=0)
    fma_w: float = Field(gt=0)
    mma_w: float = Field(gt=0)
    tensor_gemm_w: float = Field(gt=0)
    gemm_fp16_w: float = Field(gt=0)
    gemm_fp32_w: float = Field(gt=0)


class SimThermal(StrictModel):
    slowdown_c: float
    shutdown_c: float
    memory_max_c: float
    gpu_ambient_c: float
    gpu_r_fast_c_per_w: float = Field(ge=0)
    gpu_tau_fast_s: float = Field(gt=0)
    gpu_r_slow_c_per_w: float = Field(ge=0)
    gpu_tau_slow_s: float = Field(gt=0)
    memory_ambient_c: float
    memory_r_fast_c_per_w: float = Field(ge=0)
    memory_tau_fast_s: float = Field(gt=0)
    memory_r_slow_c_per_w: float = Field(ge=0)
    memory_tau_slow_s: float = Field(gt=0)


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


class FlakyBit(WordBit):
    probability: float = Field(gt=0, le=1, description="chance that a read returns it flipped")


class WrongResults(StrictModel):
    rate: float = Field(gt=0, le=1, description="chance that a compute launch returns a bad value")
    sm: int = Field(default=7, ge=0, description="the SM that computes wrong")


class RemappedRows(StrictModel):
    correctable: int = Field(default=0, ge=0)
    uncorrectable: int = Field(default=0, ge=0)
    pending: bool = False
    failure: bool = False


class RetiredPages(StrictModel):
    """Page retirement, as cards before Ampere report it instead of remapped rows."""

    sbe: int = Field(default=0, ge=0, description="pages retired for repeated single-bit errors")
    dbe: int = Field(default=0, ge=0, description="pages retired for a double-bit error")
    pending: bool = False


class OtherProcess(StrictModel):
    pid: int = Field(default=4242, gt=0)
    name: str = "python3"
    used_memory_mib: int = Field(default=2048, ge=0)


class XidAt(StrictModel):
    test: TestName
    code: int = Field(gt=0)


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
    # identity fields
    "pci_device_id",
    "pci_subsystem_id",
    "board_part_number",
    "vbios",
    "memory_bus_width_bits",
    "max_sm_clock_mhz",
    "max_memory_clock_mhz",
    "power_limit_default_w",
    "power_limit_max_w",
]


class Faults(StrictModel):
    bandwidth_scale: float = Field(default=1.0, gt=0, le=2)
    fp32_scale: float = Field(default=1.0, gt=0, le=2)
    fp16_scale: float = Field(default=1.0, gt=0, le=2)
    stuck_bits: tuple[StuckBit, ...] = ()
    flaky_bits: tuple[FlakyBit, ...] = ()
    wrong_results: WrongResults | None = None
    remapped_rows: RemappedRows = RemappedRows()
    ecc_uncorrected: int = Field(
        default=0, ge=0, description="uncorrectable ECC errors during the run"
    )
    ecc_corrected: int = Field(default=0, ge=0, description="correctable ECC errors during the run")
    ecc_enabled: bool = True
    # ECC mode after the next reboot, where a change waits for it (None: no change pending)
    ecc_pending_enabled: bool | None = None
    sram_uncorrected: int = Field(
        default=0, ge=0, description="uncorrectable on-chip (SRAM) ECC errors in the history"
    )
    # None: the card does not retire pages (Ampere and later remap rows; NVML answers "not
    # supported"). A card before Ampere: set it, and list the remapped_rows_* fields and
    # row_remap_histogram as unreadable.
    retired_pages: RetiredPages | None = None
    pcie_width: int | None = Field(default=None, ge=1, le=32)
    pcie_gen: int | None = Field(default=None, ge=1, le=6)
    thermal_resistance_scale: float = Field(default=1.0, gt=0, le=10)
    power_limit_w: float | None = Field(default=None, gt=0)
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
    working_sm_count: int | None = Field(default=None, gt=0)
    # Between-card variation of a healthy population (relative offset of every rate).
    card_offset_rel: float = Field(default=0.0, ge=-0.5, le=0.5)


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
    seed: int = 0
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
