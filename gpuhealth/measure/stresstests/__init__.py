"""The stress tests, in the order a grade runs them."""

from __future__ import annotations

from gpuhealth.measure.stresstests.bandwidth import BandwidthTest
from gpuhealth.measure.stresstests.base import StressTest
from gpuhealth.measure.stresstests.fp16_tensor import Fp16TensorTest
from gpuhealth.measure.stresstests.fp32 import Fp32Test
from gpuhealth.measure.stresstests.gemm import GemmTest
from gpuhealth.measure.stresstests.memtest import MemtestTest
from gpuhealth.measure.stresstests.pcie import PcieTest
from gpuhealth.measure.stresstests.soak import SoakTest


def all_tests() -> tuple[StressTest, ...]:
    # pcie first: a link fault shows in seconds, and the compute tests and the soak stay back to
    # back (the soak's thermal fit reads the run's telemetry as one load history)
    return (
        PcieTest(),
        BandwidthTest(),
        MemtestTest(),
        Fp32Test(),
        Fp16TensorTest(),
        GemmTest(),
        SoakTest(),
    )


TEST_NAMES = tuple(t.name for t in all_tests())
