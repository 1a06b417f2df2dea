"""Issue 14: the PCIe link and NVLink readings of backends/nvml.py, on fake NVML scenarios.

A PCIe-only answer ("not supported") is "not applicable"; any other failure is "unreadable",
never healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fake_pynvml
import pynvml
import pytest
from fake_pynvml import FakeNvml

from gpuhealth.measure.backends import nvml
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    sessions: list[nvml.Nvml] = []

    def open_card(fake: FakeNvml) -> nvml.NvmlDevice:
        monkeypatch.setattr(nvml, "_load_pynvml", fake.load)
        session = nvml.Nvml.open()
        sessions.append(session)
        return session.device(0)

    yield open_card
    for session in sessions:
        session.close()


def test_recorded_h100_has_no_nvlink_in_its_vm(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.healthy_h100())
    counters = device.counters()
    # the recording's VM answered "not supported": not applicable, nothing unreadable
    assert counters.nvlink_status == "none"
    assert counters.nvlink == ()
    assert device.unreadable == ()
    assert device.identity("cuda", 0).pcie_gen_gpu_max == 5


def test_nvlink_links_read_per_link(card: object) -> None:
    assert callable(card)
    counters = card(fake_pynvml.nvlink_healthy()).counters()
    assert counters.nvlink_status == "read"
    assert len(counters.nvlink) == 18
    assert all(link.active for link in counters.nvlink)
    assert [link.link for link in counters.nvlink] == list(range(18))
    first = counters.nvlink[0]
    assert (first.version, first.replay_errors, first.crc_flit_errors) == (4, 0, 0)
    assert counters.nvlink_speed_mbps == 25781.0


def test_nvlink_inactive_link_is_read_as_inactive(card: object) -> None:
    assert callable(card)
    counters = card(fake_pynvml.nvlink_one_down()).counters()
    assert [link.link for link in counters.nvlink if link.active is False] == [5]


def test_nvlink_errors_grow_between_reads(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.nvlink_errors_growing())
    before, after = device.counters(), device.counters()
    assert before.nvlink[0].crc_flit_errors == 0
    assert after.nvlink[0].crc_flit_errors == 7


def test_nvlink_state_failure_is_none_and_remembered(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.nvlink_state_unknown())
    counters = device.counters()
    assert counters.nvlink[2].active is None  # never True: not known
    assert counters.nvlink[3].active is True
    assert ("nvmlDeviceGetNvLinkState(2)", "NVMLError_Unknown: Unknown Error") in (
        device.unreadable
    )


def test_nvlink_count_failure_is_unreadable_not_none(card: object) -> None:
    assert callable(card)
    counters = card(fake_pynvml.nvlink_count_unknown()).counters()
    assert counters.nvlink_status == "unreadable"
    assert counters.nvlink is None  # unknown, not "no links"


def test_pcie_link_now_and_gen3_slot(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.pcie_slot_gen3())
    assert device.pcie_link_now() == (3, 16)
    identity = device.identity("cuda", 0)
    assert (identity.pcie_gen_max, identity.pcie_gen_gpu_max) == (3, 5)


# --- PCIe error counters (field values) -------------------------------------------------------
ZERO = dict.fromkeys(PCIE_ERROR_COUNTERS, 0)


def test_pcie_errors_rise_between_reads(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.pcie_errors_rising())
    before, after = device.counters(), device.counters()
    assert (before.pcie_errors_status, after.pcie_errors_status) == ("read", "read")
    assert before.pcie_errors == {**ZERO, "fatal": 2, "bad_tlp": 40}
    assert after.pcie_errors == {**ZERO, "fatal": 3, "bad_tlp": 43}
    assert device.unreadable == () and "NVML_FI_DEV_PCIE_COUNT_FATAL_ERROR" not in (
        device.unsupported
    )


def test_pcie_errors_not_supported_is_listed_not_read(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.pcie_errors_not_supported())
    counters = device.counters()
    assert counters.pcie_errors_status == "not_supported"
    assert counters.pcie_errors == dict.fromkeys(PCIE_ERROR_COUNTERS)  # None each: never 0
    assert {field for field, _, _ in PCIE_ERROR_COUNTERS.values()} <= set(device.unsupported)
    assert device.unreadable == ()


def test_pcie_errors_one_counter_not_supported_reads_the_others(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.pcie_l0_recovery_not_supported())
    counters = device.counters()
    assert counters.pcie_errors_status == "read"
    assert counters.pcie_errors == {**ZERO, "l0_to_recovery": None}
    assert "NVML_FI_DEV_PCIE_L0_TO_RECOVERY_COUNTER" in device.unsupported


def test_pcie_errors_failure_is_unreadable_on_every_read(card: object) -> None:
    assert callable(card)
    device = card(fake_pynvml.pcie_lcrc_unknown())
    before, after = device.counters(), device.counters()
    # the second read fails under the same label: still unreadable, never "read"
    assert (before.pcie_errors_status, after.pcie_errors_status) == ("unreadable", "unreadable")
    assert after.pcie_errors == {**ZERO, "lcrc": None}  # the others still read
    assert ("NVML_FI_DEV_PCIE_COUNT_LCRC_ERROR", "NVMLError_Unknown: Unknown Error") in (
        device.unreadable
    )


def test_pcie_errors_whole_query_failing_is_unreadable(card: object) -> None:
    assert callable(card)
    fake = fake_pynvml.healthy_h100()
    fake.cards[0].fail["nvmlDeviceGetFieldValues"] = pynvml.NVML_ERROR_UNKNOWN
    counters = card(fake).counters()
    assert counters.pcie_errors_status == "unreadable"
    assert counters.pcie_errors == dict.fromkeys(PCIE_ERROR_COUNTERS)


@pytest.mark.parametrize(
    ("scenario", "name", "field", "why"),
    [
        (
            fake_pynvml.pcie_answer_lacks_lane,
            "lane",
            "NVML_FI_DEV_PCIE_COUNT_LANE_ERROR",
            "no entry in NVML's answer",
        ),
        (
            fake_pynvml.pcie_bad_dllp_of_odd_type,
            "bad_dllp",
            "NVML_FI_DEV_PCIE_COUNT_BAD_DLLP",
            "a value of a type gpuhealth does not read",
        ),
    ],
)
def test_pcie_errors_missing_from_the_answer_are_unreadable(
    card: object, scenario: Callable[[], FakeNvml], name: str, field: str, why: str
) -> None:
    assert callable(card)
    device = card(scenario())
    counters = device.counters()
    assert counters.pcie_errors_status == "unreadable"
    assert counters.pcie_errors == {**ZERO, name: None}
    assert device.unreadable == ((field, why),)
