"""Fit the simulated card's thermal model to the measured soak telemetry; print TOML to paste.

    python bench/calibrate_sim.py

Model (the one gpuhealth/measure/backends/simthermal.py runs): temperature = ambient + x_fast +
x_slow,
each state a first-order lag driven by board power: dx/dt = (R * P - x) / tau. Fitted by least
squares on the measured power series, for the GPU and the memory temperature separately. The time
constants are bounded (fast 0.1-10 s, slow 2-120 s) because the short recordings cannot tell a slow
tail from a plateau.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

REFERENCE = Path(__file__).resolve().parent.parent / "gpuhealth" / "data" / "reference"
FILES = {
    "h100-sxm5-80gb": "soak-telemetry-h100-sxm5-80gb-long.csv",
    "h200-sxm-141gb": "soak-telemetry-h200-sxm-141gb.csv",
}


def load(path: Path) -> dict[str, np.ndarray]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def simulate(params: np.ndarray, t: np.ndarray, power: np.ndarray) -> np.ndarray:
    ambient, r_fast, tau_fast, r_slow, tau_slow = params
    x_fast, x_slow = r_fast * power[0], r_slow * power[0]
    out = np.empty_like(t)
    previous = t[0]
    for i, (now, p) in enumerate(zip(t, power, strict=True)):
        dt = now - previous
        previous = now
        a_fast, a_slow = np.exp(-dt / tau_fast), np.exp(-dt / tau_slow)
        x_fast = x_fast * a_fast + r_fast * p * (1 - a_fast)
        x_slow = x_slow * a_slow + r_slow * p * (1 - a_slow)
        out[i] = ambient + x_fast + x_slow
    return out


def fit(t: np.ndarray, power: np.ndarray, temp: np.ndarray) -> tuple[np.ndarray, float]:
    result = least_squares(
        lambda q: simulate(q, t, power) - temp,
        x0=[30.0, 0.02, 1.0, 0.02, 20.0],
        bounds=([0.0, 0.0, 0.1, 0.0, 2.0], [80.0, 0.2, 10.0, 0.2, 120.0]),
    )
    return result.x, float(np.sqrt(np.mean(result.fun**2)))


def main() -> None:
    for model, name in FILES.items():
        data = load(REFERENCE / name)
        print(f"# {model}: fitted to {name}")
        for key, prefix in (("temp_c", "gpu"), ("mem_temp_c", "memory")):
            (ambient, r_fast, tau_fast, r_slow, tau_slow), rms = fit(
                data["t"], data["power_w"], data[key]
            )
            print(f"{prefix}_ambient_c = {ambient:.2f}")
            print(f"{prefix}_r_fast_c_per_w = {r_fast:.5f}")
            print(f"{prefix}_tau_fast_s = {tau_fast:.2f}")
            print(f"{prefix}_r_slow_c_per_w = {r_slow:.5f}")
            print(f"{prefix}_tau_slow_s = {tau_slow:.2f}")
            print(f"# {prefix} fit RMS error {rms:.2f} °C")
        print()


if __name__ == "__main__":
    main()
