#!/usr/bin/env bash
# Thermal resistance on a real card, cold and then warm: does the whole-run fit (thermal_fit.py,
# with the soak's held memory phase) give the same °C/W when the card starts warm?
#
#   bench/thermal_check.sh [OUT_DIR]        (default: $OUT, else a temporary folder)
#
# 1. the contract and CUDA backend tests (`gpu` marker), 2. a standard grade (the card as found,
# usually cold), 3. a --quick grade straight after (the card still warm). The run records are kept
# in OUT_DIR/{standard,quick}.json; the last lines are one table. BACKEND=sim tries it without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
out="${1:-${OUT:-$(mktemp -d)}}"
work="$(mktemp -d)"
status=0

echo "== gpu tests"
"$PYTHON" -m pytest -m gpu -q tests/test_backend_contract.py tests/test_cuda_backend.py || status=$?

for preset in standard quick; do
  echo "== grade --preset $preset"
  SECONDS=0
  "$PYTHON" -m gpuhealth grade --backend "${BACKEND:-cuda}" --preset "$preset" \
    --out "$work/$preset" --quiet
  echo "exit $? after ${SECONDS} s"
  cp "$work/$preset/run.json" "$out/$preset.json" 2>/dev/null || status=1
done

"$PYTHON" - "$out" <<'EOF'
import json, sys
from pathlib import Path
print(f"\n{'run':9} {'grade':5} {'wall s':>7} {'°C/W':>8} {'95% range':>17} {'ref':>7}  refusal / reasons")
for name in ("standard", "quick"):
    path = Path(sys.argv[1]) / f"{name}.json"
    if not path.is_file():
        print(f"{name:9} no record")
        continue
    r = json.loads(path.read_text())
    s = (r.get("analysis") or {}).get("soak") or {}
    g = r.get("grade") or {}
    low, high = s.get("thermal_resistance_low_c_per_w"), s.get("thermal_resistance_high_c_per_w")
    span = f"{low:.4f}-{high:.4f}" if low and high else "-"
    why = s.get("thermal_resistance_refusal") or ", ".join(x["rule"] for x in g.get("reasons", []))
    print(f"{name:9} {g.get('letter', '?'):5} {r.get('wall_time_s') or 0:7.1f} "
          f"{s.get('thermal_resistance_c_per_w') or 0:8.4f} {span:>17} "
          f"{s.get('reference_c_per_w') or 0:7.4f}  {why}")
EOF
exit "$status"
