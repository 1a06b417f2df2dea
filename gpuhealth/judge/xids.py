"""Xid events by class, after NVIDIA's Xid catalogue ("Analyzing Xid Errors with the Xid Catalog",
docs.nvidia.com/deploy/xid-errors): what the event says about the card and the catalogue's
resolution (restart the application, reset the GPU, contact support). Each class is its own finding
code, so that the policy grades it with a rationale; a code not listed here is "unknown", which the
default policy never grades better than C (an event gpuhealth cannot explain is not a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuhealth.models import Severity


@dataclass(frozen=True)
class XidClass:
    finding: str  # the finding code the policy grades
    severity: Severity
    what: str  # the class in words


FATAL = XidClass("xid_fatal", "critical", "a fault of the card's memory or its repair")
CARD_LOST = XidClass(
    "xid_card_lost",
    "major",
    "the card stopped answering: it needs a reset, and its slot, power and firmware a look",
)
NVLINK = XidClass("xid_nvlink", "major", "an NVLink error")
APPLICATION = XidClass(
    "xid_application", "minor", "an error the catalogue attributes to the application"
)
UNKNOWN = XidClass("xid", "major", "an event gpuhealth does not know")

# code -> (class, the catalogue's description)
CATALOGUE: dict[int, tuple[XidClass, str]] = {
    48: (FATAL, "double-bit ECC error"),
    63: (FATAL, "row remapping event (ECC page retirement)"),
    64: (FATAL, "row remapping failure"),
    92: (FATAL, "high single-bit ECC error rate"),
    94: (FATAL, "contained ECC error"),
    95: (FATAL, "uncontained ECC error"),
    79: (CARD_LOST, "GPU has fallen off the bus"),
    119: (CARD_LOST, "GSP RPC timeout"),
    120: (CARD_LOST, "GSP error"),
    154: (CARD_LOST, "GPU recovery action changed: reset or reboot required"),
    74: (NVLINK, "NVLink error"),
    13: (APPLICATION, "graphics engine exception"),
    31: (APPLICATION, "GPU memory page fault"),
    43: (APPLICATION, "GPU stopped processing"),
    45: (APPLICATION, "preemptive cleanup after earlier errors"),
}


def classify(code: int) -> tuple[XidClass, str]:
    """The class of an Xid code and its description (unknown codes: UNKNOWN, no description)."""
    return CATALOGUE.get(code, (UNKNOWN, "not in gpuhealth's Xid catalogue"))
