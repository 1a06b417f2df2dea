"""gpuhealth/measure/backends/nvml.py against a fake pynvml that answers from recorded NVML data.

The healthy scenarios assert the values two real cards gave (tests/data/nvml/*.json), so a wrong
mapping (wrong function, wrong enum, wrong unit) fails here. One test at the end reads a real card
and is skipped where there is none.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fake_pynvml
import pynvml
import pytest
from fake_pynvml import FakeNvml

from gpuhealth.errors import EXIT_INCOMPLETE, DeviceLost, EnvironmentUnusable
from gpuhealth.measure.backends import nvml
from gpuhealth.models import (
    CardIdentity,
    HealthCounters,
    ProcessInfo,
    RowRemapHistogram,
    TelemetrySample,
    XidEvent,
)
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS

H100_BUS = "00000000:00:06.0"


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """use(scenario) installs a fake pynvml and opens an NVML session on it."""
    sessions: list[nvml.Nvml] = []

    def install(fake: FakeNvml) -> nvml.Nvml:
        monkeypatch.setattr(nvml, "_load_pynvml", fake.load)
        session = nvml.Nvml.open()
        sessions.append(session)
        return session

    yield install
    for session in sessions:
        session.close()


def open_card(use: object, fake: FakeNvml, index: int = 0) -> tuple[nvml.Nvml, nvml.NvmlDevice]:
    assert callable(use)
    session = use(fake)
    assert isinstance(session, nvml.Nvml)
    return session, session.device(index)


# --- healthy cards: the recorded values, mapped and converted -------------------------------


def test_healthy_h100_identity(use: object) -> None:
    _, card = open_card(use, fake_pynvml.healthy_h100())
    assert card.identity("cuda", 0) == CardIdentity(
        name="NVIDIA H100 80GB HBM3",
        backend="cuda",
        index=0,
        uuid="GPU-00000000-0000-4000-8000-000000000101",
        serial="1650000000101",
        board_part_number="695-2G520-0200-000",
        vbios="96.00.DA.00.0C",
        inforom="G520.0200.00.05",
        pci_bus_id=H100_BUS,
        driver_version="580.159.04",
        cuda_driver_version="13.0",
        memory_total_bytes=85520809984,
        sm_count=None,  # NVML gives it through device attributes, for MIG only
        compute_capability="9.0",
        memory_bus_width_bits=5120,  # not in the probe: the published width, see the data file
        max_sm_clock_mhz=1980.0,
        max_memory_clock_mhz=2619.0,
        pcie_gen_max=5,
        pcie_width_max=16,
        power_limit_default_w=700.0,
        # recorded pciDeviceId 590352606 and pciSubSystemId 381751518, in nvidia-smi's hex
        pci_device_id="0x233010DE",
        pci_subsystem_id="0x16C110DE",
        power_limit_max_w=700.0,  # recorded constraints [200000, 700000] mW
        pcie_gen_gpu_max=5,  # recorded: nvmlDeviceGetGpuMaxPcieLinkGeneration
    )
    assert card.unsupported == ("nvmlDeviceGetAttributes",)
    assert card.unreadable == ()


def test_healthy_h100_counters(use: object) -> None:
    _, card = open_card(use, fake_pynvml.healthy_h100())
    assert card.counters() == HealthCounters(
        ecc_enabled=True,
        ecc_volatile_corrected=0,
        ecc_volatile_uncorrected=0,
        ecc_aggregate_corrected=0,
        ecc_aggregate_uncorrected=0,
        remapped_rows_correctable=0,
        remapped_rows_uncorrectable=0,
        remapped_rows_pending=False,
        remapped_rows_failure=False,
        row_remap_histogram=RowRemapHistogram(max=2560, high=0, partial=0, low=0, none=0),
        pcie_gen_current=5,
        pcie_width_current=16,
        pcie_replay_count=0,
        power_limit_w=700.0,
        temperature_c=40.0,
        temperature_slowdown_c=89.0,
        temperature_shutdown_c=95.0,
        memory_temperature_max_c=95.0,
        energy_j=2515.918,
        clocks_event_reasons=1,  # GPU idle
        ecc_pending_enabled=True,  # recorded (1, 1): no change waits for a reboot
        # derived from the recorded total of 0: the probe did not ask by location
        ecc_aggregate_uncorrected_dram=0,
        ecc_aggregate_uncorrected_sram=0,
        # retired pages are not asked where the row remapper answers (recorded: not supported)
        nvlink_status="none",  # recorded: the NVLink count field is not supported in its VM
        nvlink=(),
        # not in the probe: the data file's zero counts, so that the fake answers them
        pcie_errors_status="read",
        pcie_errors=dict.fromkeys(PCIE_ERROR_COUNTERS, 0),
    )
    assert card.unsupported == ("NVML_FI_DEV_NVLINK_LINK_COUNT",)
    assert card.unreadable == ()


def test_healthy_h100_telemetry(use: object) -> None:
    _, card = open_card(use, fake_pynvml.healthy_h100())
    assert card.telemetry(1.5) == TelemetrySample(
        t_s=1.5,
        temperature_c=40.0,
        memory_temperature_c=42.0,
        power_w=73.194,
        sm_clock_mhz=345.0,
        memory_clock_mhz=2619.0,
        utilization_pct=0.0,
        clocks_event_reasons=1,
        energy_j=2515.918,
    )
    assert card.unreadable == ()


def test_healthy_h200(use: object) -> None:
    _, card = open_card(use, fake_pynvml.healthy_h200())
    identity = card.identity("cuda", 0)
    assert identity.name == "NVIDIA H200"
    assert identity.serial == "1650000000202"
    assert identity.board_part_number == "692-2G520-0282-000"
    assert identity.memory_total_bytes == 150754820096
    assert identity.memory_bus_width_bits == 6016  # from another H200, see the data file
    assert (identity.pci_device_id, identity.pci_subsystem_id) == ("0x233510DE", "0x18BF10DE")
    assert identity.power_limit_max_w == 700.0
    assert card.max_clocks_mhz() == (1980.0, 3201.0)
    counters = card.counters()
    assert counters.row_remap_histogram == RowRemapHistogram(3072, 0, 0, 0, 0)
    assert counters.temperature_c == 36.0
    assert counters.energy_j == 2357.203
    sample = card.telemetry(0.0)
    assert sample.memory_temperature_c == 36.0
    assert sample.power_w == 80.905
    assert sample.memory_clock_mhz == 3201.0
    assert card.unreadable == ()


def test_session_queries(use: object) -> None:
    session, _ = open_card(use, fake_pynvml.healthy_h100())
    assert session.device_count() == 1
    assert session.driver_version() == "580.159.04"
    assert session.cuda_driver_version() == "13.0"
    assert session.unreadable == ()


def test_device_by_pci_bus_id_accepts_cuda_and_nvml_forms(use: object) -> None:
    assert callable(use)
    session = use(fake_pynvml.two_cards())
    assert session.device_count() == 2
    assert session.device_by_pci_bus_id("0000:00:07.0").identity("cuda", 1).name == "NVIDIA H200"
    h100 = session.device_by_pci_bus_id(H100_BUS).identity("cuda", 0)
    assert h100.serial == "1650000000101"
    assert session.device(1).pci_bus_id() == "00000000:00:07.0"


def test_unknown_index_or_bus_id_is_an_environment_error(use: object) -> None:
    session, _ = open_card(use, fake_pynvml.healthy_h100())
    with pytest.raises(EnvironmentUnusable, match="no GPU at index 1") as index_error:
        session.device(1)
    assert "1 GPU(s)" in (index_error.value.hint or "")
    with pytest.raises(EnvironmentUnusable, match=re.escape("0000:3b:00.0")):
        session.device_by_pci_bus_id("0000:3b:00.0")


# --- not supported: None, never a crash, never a pass ---------------------------------------


def test_fields_not_supported_read_as_none(use: object) -> None:
    _, card = open_card(use, fake_pynvml.fields_not_supported())
    counters = card.counters()
    assert counters.remapped_rows_correctable is None
    assert counters.remapped_rows_pending is None  # unknown, not False
    assert counters.row_remap_histogram is None
    sample = card.telemetry(2.0)
    assert sample.memory_temperature_c is None
    assert sample.power_w is None
    assert card.processes() == ()
    # what could be read still is
    assert counters.temperature_c == 40.0
    assert sample.temperature_c == 40.0
    assert counters.ecc_enabled is True
    assert set(card.unsupported) == {
        "nvmlDeviceGetRemappedRows",
        "nvmlDeviceGetRowRemapperHistogram",
        "NVML_FI_DEV_MEMORY_TEMP",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
        # no row remapper answer: page retirement is asked instead, and not supported either
        f"nvmlDeviceGetRetiredPages({pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS})",
        f"nvmlDeviceGetRetiredPages({pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR})",
        "nvmlDeviceGetRetiredPagesPendingStatus",
        "NVML_FI_DEV_NVLINK_LINK_COUNT",  # recorded: NVLink not supported in the VM
    }
    assert counters.retired_pages_sbe is None and counters.retired_pages_pending is None
    assert card.unreadable == ()


def test_old_driver_falls_back_to_older_functions(use: object) -> None:
    session, card = open_card(use, fake_pynvml.old_driver())
    assert card.counters().clocks_event_reasons == 1  # through ...ThrottleReasons
    assert session.cuda_driver_version() == "13.0"  # through nvmlSystemGetCudaDriverVersion
    assert card.memory_bus_width_bits() is None  # this pynvml predates the function
    # a fallback that answered leaves nothing unsupported behind it
    assert card.unsupported == ("NVML_FI_DEV_NVLINK_LINK_COUNT", "nvmlDeviceGetMemoryBusWidth")
    assert card.unreadable == () and session.unreadable == ()


def test_pci_ids_and_power_range_not_given_are_none(use: object) -> None:
    _, card = open_card(use, fake_pynvml.no_power_constraints_no_subsystem())
    identity = card.identity("cuda", 0)
    assert identity.pci_device_id == "0x233010DE"  # the rest of the answer is still read
    assert identity.pci_subsystem_id is None  # 0: not filled, never "0x00000000"
    assert identity.power_limit_max_w is None
    assert identity.power_limit_default_w == 700.0
    assert "nvmlDeviceGetPowerManagementLimitConstraints" in card.unsupported
    assert card.unreadable == ()


def test_unexpected_error_is_none_and_remembered(use: object) -> None:
    _, card = open_card(use, fake_pynvml.unknown_error_card_present())
    counters = card.counters()
    assert counters.pcie_replay_count is None
    assert counters.pcie_gen_current == 5
    assert card.unreadable == (
        ("nvmlDeviceGetPcieReplayCounter", "NVMLError_Unknown: Unknown Error"),
    )
    assert card.telemetry(0.0).temperature_c == 40.0  # the card is still there


# --- lost card: DeviceLost naming the query, then every later call too ----------------------


def test_gpu_lost_mid_query_raises_device_lost(use: object) -> None:
    fake = fake_pynvml.gpu_lost_mid_query(after=3)
    _, card = open_card(use, fake)
    with pytest.raises(DeviceLost) as lost:
        card.counters()
    failing_call = fake.cards[0].calls[3]
    assert failing_call in lost.value.message
    assert "GPU 0" in lost.value.message
    assert "GpuIsLost" in lost.value.message
    assert "Xid" in (lost.value.hint or "")
    calls_so_far = len(fake.cards[0].calls)
    for later in (card.telemetry, card.xid_events):
        with pytest.raises(DeviceLost):
            later(1.0)
    with pytest.raises(DeviceLost):
        card.identity("cuda", 0)
    assert len(fake.cards[0].calls) == calls_so_far  # no call reached NVML again


def test_unknown_error_after_card_vanished_is_device_lost(use: object) -> None:
    fake = fake_pynvml.gpu_unknown_then_gone(after=2)
    _, card = open_card(use, fake)
    with pytest.raises(DeviceLost, match="NVMLError_Unknown"):
        card.telemetry(0.0)
    # the vanished-check asked the card its temperature and got UNKNOWN again
    assert fake.cards[0].calls[-1] == "nvmlDeviceGetTemperature"


def test_lost_card_does_not_break_the_session(use: object) -> None:
    fake = fake_pynvml.gpu_lost_mid_query(after=0)
    session, card = open_card(use, fake)
    with pytest.raises(DeviceLost):
        card.max_clocks_mhz()
    assert session.driver_version() == "580.159.04"
    session.close()  # frees nothing on the lost card, shuts NVML down, raises nothing
    assert fake.shutdowns == 1


# --- environment unusable: a one-line hint that says how to fix it --------------------------


def test_library_missing(use: object) -> None:
    assert callable(use)
    with pytest.raises(EnvironmentUnusable) as error:
        use(fake_pynvml.library_missing())
    assert "libnvidia-ml.so.1" in error.value.message
    assert "install the NVIDIA driver" in (error.value.hint or "")
    assert error.value.exit_code == EXIT_INCOMPLETE
    assert "\n" not in error.value.one_line()


def test_driver_not_loaded(use: object) -> None:
    assert callable(use)
    with pytest.raises(EnvironmentUnusable, match="not loaded") as error:
        use(fake_pynvml.driver_not_loaded())
    assert "modprobe nvidia" in (error.value.hint or "")


def test_bindings_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_load_pynvml", fake_pynvml.module_missing())
    with pytest.raises(EnvironmentUnusable, match="pynvml") as error:
        nvml.Nvml.open()
    assert error.value.hint == "pip install nvidia-ml-py"


# --- a used card's history ------------------------------------------------------------------


def test_remapped_rows_pending_and_ecc_errors(use: object) -> None:
    _, card = open_card(use, fake_pynvml.remapped_rows_pending_with_ecc())
    counters = card.counters()
    assert counters.remapped_rows_correctable == 2
    assert counters.remapped_rows_uncorrectable == 1
    assert counters.remapped_rows_pending is True
    assert counters.remapped_rows_failure is False
    assert counters.row_remap_histogram == RowRemapHistogram(
        max=2557, high=3, partial=0, low=0, none=0
    )
    assert (
        counters.ecc_volatile_corrected,
        counters.ecc_volatile_uncorrected,
        counters.ecc_aggregate_corrected,
        counters.ecc_aggregate_uncorrected,
    ) == (12, 1, 340, 1)


# --- processes ------------------------------------------------------------------------------


def test_processes_deduplicated_with_names(
    use: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("python3\n")
    monkeypatch.setattr(nvml, "_PROC_ROOT", tmp_path)
    _, card = open_card(use, fake_pynvml.busy_card())
    assert card.processes() == (
        ProcessInfo(pid=4242, name="python3", used_memory_bytes=1 << 30),
        ProcessInfo(pid=5151, name=None, used_memory_bytes=None),  # gone from /proc
    )


def test_idle_card_has_no_processes(use: object) -> None:
    _, card = open_card(use, fake_pynvml.healthy_h100())
    assert card.processes() == ()
    assert card.unsupported == () and card.unreadable == ()


# --- Xid events -----------------------------------------------------------------------------


def test_xid_events_since_last_call(use: object) -> None:
    fake = fake_pynvml.healthy_h100()
    session, card = open_card(use, fake)
    assert card.xid_events(0.0) == ()  # registers the event set
    fake.cards[0].raise_xid(48)
    fake.cards[0].raise_xid(94)
    assert card.xid_events(7.5) == (
        XidEvent(7.5, 48, "double-bit ECC error"),
        XidEvent(7.5, 94, "contained ECC error"),
    )
    assert card.xid_events(8.0) == ()  # timeout 0: nothing new, nothing blocks
    fake.cards[0].raise_xid(4242)
    assert card.xid_events(9.0) == (XidEvent(9.0, 4242, None),)
    assert card.unreadable == ()
    session.close()
    assert [s.freed for s in fake.event_sets] == [True]


def test_xid_events_unsupported(use: object) -> None:
    fake = fake_pynvml.xid_unsupported()
    _, card = open_card(use, fake)
    assert card.xid_events(0.0) == ()
    assert card.xid_events(1.0) == ()
    assert card.unsupported == (
        f"nvmlDeviceRegisterEvents({pynvml.nvmlEventTypeXidCriticalError})",
    )
    assert len(fake.event_sets) == 1 and fake.event_sets[0].freed  # tried once, freed


# --- the layer itself -----------------------------------------------------------------------


def test_session_close_shuts_nvml_down_once(use: object) -> None:
    fake = fake_pynvml.healthy_h100()
    session, _ = open_card(use, fake)
    session.close()
    session.close()
    assert fake.shutdowns == 1 and fake.initialized == 0


def test_every_pynvml_name_used_exists_in_the_real_module() -> None:
    """nvml.py names functions and constants as strings; none of them may be guessed."""
    source = Path(nvml.__file__).read_text()
    names = set(re.findall(r'"((?:nvml|NVML_)\w+)"', source))
    names -= {name for name, _ in pynvml.c_nvmlFieldValue_t._fields_}  # "nvmlReturn"
    assert "nvmlDeviceGetRemappedRows" in names
    assert sorted(n for n in names if not hasattr(pynvml, n)) == []


def test_fake_is_faithful_to_the_real_module() -> None:
    fake = fake_pynvml.healthy_h100().module()
    assert fake.NVMLError_NotSupported is pynvml.NVMLError_NotSupported
    assert fake.NVML_FI_DEV_MEMORY_TEMP == pynvml.NVML_FI_DEV_MEMORY_TEMP
    real_functions = {n for n in vars(pynvml) if n.startswith("nvml") and callable(vars(pynvml)[n])}
    fake_functions = {n for n in vars(fake) if n.startswith("nvml") and callable(vars(fake)[n])}
    assert fake_functions == real_functions


def test_importing_nvml_does_not_import_pynvml() -> None:
    code = "import sys, gpuhealth.measure.backends.nvml; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- a real card, where there is one --------------------------------------------------------


@pytest.mark.gpu
def test_real_card_reads_through_nvml() -> None:
    try:
        session = nvml.Nvml.open()
    except EnvironmentUnusable as exc:
        pytest.skip(f"no NVML here: {exc.one_line()}")
    with session:
        if session.device_count() == 0:
            pytest.skip("NVML sees no GPU")
        card = session.device(0)
        identity = card.identity("cuda", 0)
        counters = card.counters()
        sample = card.telemetry(0.0)
        card.processes()
        card.xid_events(0.0)
        assert identity.uuid is not None and identity.uuid.startswith("GPU-")
        assert identity.pci_bus_id is not None
        assert identity.memory_total_bytes is not None and identity.memory_total_bytes > 0
        assert counters.temperature_c is not None and 0 < counters.temperature_c < 120
        assert sample.power_w is None or 0 < sample.power_w < 2000
        assert card.unreadable == ()
