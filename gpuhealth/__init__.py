"""gpuhealth: grade used NVIDIA GPUs for resale or recycling."""

__version__ = "0.2.0"
