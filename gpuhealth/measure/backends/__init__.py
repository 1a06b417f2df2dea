"""Choose a backend by name, lazily: importing gpuhealth never imports CuPy or pynvml."""

from __future__ import annotations

from typing import Literal

from gpuhealth.errors import EnvironmentUnusable
from gpuhealth.measure.backends.base import Backend
from gpuhealth.models import CardIdentity

BackendName = Literal["auto", "cuda", "sim"]
DEMO_CARD = "h100-sxm5-80gb"
NO_GPU_HINT = "to try gpuhealth without a GPU: gpuhealth grade --demo"


def open_backend(name: BackendName, index: int = 0, sim_card: str | None = None) -> Backend:
    if name == "sim" or (name == "auto" and sim_card is not None):
        from gpuhealth.measure.backends.sim import SimBackend
        from gpuhealth.measure.backends.simcards import load_card

        return SimBackend(load_card(sim_card or DEMO_CARD), index)
    if name == "auto" and cuda_device_count() == 0:
        raise EnvironmentUnusable("no NVIDIA GPU found", hint=NO_GPU_HINT)
    from gpuhealth.measure.backends.cuda import CudaBackend

    return CudaBackend(index)


def cuda_device_count() -> int:
    """GPUs NVML can see; 0 when there is no driver or no library."""
    from gpuhealth.measure.backends.nvml import Nvml

    try:
        nvml = Nvml.open()
    except EnvironmentUnusable:
        return 0
    try:
        return nvml.device_count()
    finally:
        nvml.close()


def list_devices(name: BackendName, sim_card: str | None = None) -> list[CardIdentity]:
    """Identity of every card the backend sees, without opening CUDA."""
    if name == "sim" or (name == "auto" and sim_card is not None):
        return [open_backend("sim", 0, sim_card).identity()]
    from gpuhealth.measure.backends.nvml import Nvml

    try:
        nvml = Nvml.open()
    except EnvironmentUnusable as exc:
        if name == "auto":
            exc.hint = exc.hint or NO_GPU_HINT
        raise
    try:
        return [nvml.device(i).identity("cuda", i) for i in range(nvml.device_count())]
    finally:
        nvml.close()
