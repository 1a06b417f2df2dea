"""The PCIe error counters NVML keeps for a card (issue 14): their names in the run record, their
labels, and which class each belongs to.

NVML gives them as field values (nvmlDeviceGetFieldValues, NVML_FI_DEV_PCIE_*); the run record
keeps each under the name below (HealthCounters.pcie_errors). Shared by the NVML backend, the sim,
the findings and the certificate.

The classes follow the PCIe specification's error classes, with one judgement of ours:
- uncorrectable: fatal and non-fatal errors, what the card signalled as ERR_FATAL / ERR_NONFATAL:
  a transaction was lost or poisoned, not retried;
- correctable: errors the data-link layer recovered by itself (a replay, a retrain): receiver,
  bad TLP / DLLP, LCRC and lane errors, NAKs either way, L0 → recovery transitions, and the
  card's own correctable count. Data arrived intact, the link is marginal;
- unsupported requests are uncorrectable in the specification but mostly host software asking
  for something the card does not implement, not the link: counted with the correctable class
  (a rise is disclosed, not held as a fault; a real one also raises the non-fatal count).
"""

from __future__ import annotations

from typing import Final, Literal

PcieErrorClass = Literal["uncorrectable", "correctable"]

# record name → (NVML field, label, class); in the order the certificate and findings name them
PCIE_ERROR_COUNTERS: Final[dict[str, tuple[str, str, PcieErrorClass]]] = {
    "fatal": ("NVML_FI_DEV_PCIE_COUNT_FATAL_ERROR", "fatal", "uncorrectable"),
    "non_fatal": ("NVML_FI_DEV_PCIE_COUNT_NON_FATAL_ERROR", "non-fatal", "uncorrectable"),
    "correctable": ("NVML_FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS", "correctable", "correctable"),
    "receiver": ("NVML_FI_DEV_PCIE_COUNT_RECEIVER_ERROR", "receiver", "correctable"),
    "bad_tlp": ("NVML_FI_DEV_PCIE_COUNT_BAD_TLP", "bad TLP", "correctable"),
    "bad_dllp": ("NVML_FI_DEV_PCIE_COUNT_BAD_DLLP", "bad DLLP", "correctable"),
    "lcrc": ("NVML_FI_DEV_PCIE_COUNT_LCRC_ERROR", "LCRC", "correctable"),
    "lane": ("NVML_FI_DEV_PCIE_COUNT_LANE_ERROR", "lane", "correctable"),
    "naks_received": ("NVML_FI_DEV_PCIE_COUNT_NAKS_RECEIVED", "NAKs received", "correctable"),
    "naks_sent": ("NVML_FI_DEV_PCIE_COUNT_NAKS_SENT", "NAKs sent", "correctable"),
    "l0_to_recovery": (
        "NVML_FI_DEV_PCIE_L0_TO_RECOVERY_COUNTER",
        "L0 to recovery",
        "correctable",
    ),
    "unsupported_request": (
        "NVML_FI_DEV_PCIE_COUNT_UNSUPPORTED_REQ",
        "unsupported request",
        "correctable",
    ),
}
PcieErrorName = Literal[
    "fatal",
    "non_fatal",
    "correctable",
    "receiver",
    "bad_tlp",
    "bad_dllp",
    "lcrc",
    "lane",
    "naks_received",
    "naks_sent",
    "l0_to_recovery",
    "unsupported_request",
]


def names_of(kind: PcieErrorClass) -> tuple[str, ...]:
    return tuple(name for name, (_, _, k) in PCIE_ERROR_COUNTERS.items() if k == kind)
