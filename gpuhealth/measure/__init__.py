"""Stage 2, measure: run the stress tests on a card and record what they saw.

The grade's driver lives here too: `runner` grades one card (identify, measure, then hands the
record to judge, certificate and store; `stopping` makes it stop at the next kernel), `plan`
checks what a grade command asks for before any worker starts, `fleet` supervises one worker
process per card and `outcomes` sums their ends up; `recheck` measures a signed report's evidence
again for `gpuhealth verify --recheck`.

- `backends/`: the card itself (CUDA + NVML, or the simulated card); the only code that imports
  cupy or pynvml (backends/cuda.py, backends/kernels.py, backends/nvml.py).
- `stresstests/`: the tests, each checking its results against host arithmetic.
- `telemetry`, `memclear`, `runfolder`: sampling during tests, the final memory clear, the run
folder.

May import: the shared top-level modules, judge, certificate, store, and itself. Never the CLI.
"""
