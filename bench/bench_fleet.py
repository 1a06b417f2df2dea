"""Parallel grading: 8 simulated GPUs at once against one alone, and one of 8 workers SIGKILLed.

    python bench/bench_fleet.py [--cards 8] [--scale 0.25] [--preset quick] [--hang-margin 5]

On a real host each worker mostly waits for its GPU, so 8 cards at once should take about as long
as one (target: <= 1.3x one card's wall time). The simulated card computes on the CPU instead, and
8 of them cannot run in the time of one on a machine with fewer cores; so the cards here sleep
`--scale` real seconds per simulated device second (the card spec's `wall_time_scale`), which
makes each card's wall time dominated by (simulated) device time, as on a GPU. What remains
measured is the supervisor's own cost: spawning workers, imports, pipes, journaling, judging.
The kill scenario SIGKILLs one worker when its journal shows gemm finished (the soak running) and
checks that the other 7 finish with a grade and the killed card is INCOMPLETE with 5 tests kept.
The hang scenario grades one card whose fp32 kernel never returns (sim fault hang_at) and reports
the time from the hung test's start to its INCOMPLETE record, against the watchdog's limit (the
test's budget x 1.5 + the margin; 60 s by default, --hang-margin here to keep the run short).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from gpuhealth.errors import InputError
from gpuhealth.measure.fleet import PID_FILE, FleetEvent, Supervisor
from gpuhealth.measure.outcomes import CardOutcome
from gpuhealth.measure.plan import WATCHDOG_SCALE, WorkerSpec
from gpuhealth.models import record_from_json
from gpuhealth.presets import preset as preset_named


def card_file(folder: Path, gpu: int, scale: float) -> Path:
    path = folder / f"card{gpu}.toml"
    path.write_text(
        f'model = "h100-sxm5-80gb"\nserial = "SIM-BENCH-{gpu:04d}"\n'
        f'uuid = "GPU-BENCH-{gpu:04d}"\nseed = {gpu}\nwall_time_scale = {scale}\n',
        encoding="utf-8",
    )
    return path


def specs(folder: Path, cards: int, scale: float, preset: str) -> list[WorkerSpec]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        WorkerSpec(
            gpu=gpu,
            backend="sim",
            sim_card=str(card_file(folder, gpu, scale)),
            out_dir=folder / f"gpu{gpu}",
            preset=preset,
        )
        for gpu in range(cards)
    ]


def grade(folder: Path, cards: int, scale: float, preset: str) -> tuple[float, list[CardOutcome]]:
    start = time.perf_counter()
    outcomes = Supervisor(specs(folder, cards, scale, preset)).run()
    return time.perf_counter() - start, outcomes


def hang_to_record(folder: Path, preset: str, margin_s: float) -> tuple[float, float, str]:
    """(seconds from the hung test's start to its INCOMPLETE record, the watchdog's limit, the
    record's `interrupted`)."""
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "hung.toml"
    card.write_text(
        'model = "h100-sxm5-80gb"\nserial = "SIM-BENCH-HANG"\n[faults]\nhang_at = "fp32"\n',
        encoding="utf-8",
    )
    spec = WorkerSpec(gpu=0, backend="sim", sim_card=str(card), out_dir=folder / "gpu0",
                      preset=preset)  # fmt: skip
    started: list[float] = []
    ended: list[float] = []

    def on_event(event: FleetEvent) -> None:
        if event.kind == "start" and event.test == "fp32":
            started.append(time.perf_counter())
        elif event.kind in ("done", "failed"):
            ended.append(time.perf_counter())

    (outcome,) = Supervisor([spec], on_event, watchdog_margin_s=margin_s).run()
    limit = preset_named(preset).budget_s("fp32") * WATCHDOG_SCALE + margin_s
    why = outcome.graded.record.interrupted if outcome.graded else outcome.error
    return ended[0] - started[0], limit, why or "-"


def journaled(folder: Path) -> int:
    try:
        text = (folder / "run.json").read_text(encoding="utf-8")
        return len(record_from_json(text).tests)
    except (OSError, InputError):  # absent or being replaced: not yet
        return 0


def kill_when_soaking(folder: Path, done: threading.Event) -> None:
    while not done.is_set():
        if journaled(folder) == 5 and (folder / PID_FILE).exists():
            time.sleep(0.5)
            os.kill(int((folder / PID_FILE).read_text(encoding="ascii")), signal.SIGKILL)
            return
        time.sleep(0.02)


def letters(outcomes: list[CardOutcome]) -> str:
    return " ".join(
        o.graded.record.grade.letter if o.graded and o.graded.record.grade else "-"
        for o in outcomes
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=8)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--hang-margin", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one_s, one = grade(root / "one", 1, args.scale, args.preset)
        many_s, many = grade(root / "many", args.cards, args.scale, args.preset)
        kill_root = root / "kill"
        kill_root.mkdir()
        done = threading.Event()
        killer = threading.Thread(target=kill_when_soaking, args=(kill_root / "gpu3", done))
        killer.start()
        try:
            kill_s, killed = grade(kill_root, args.cards, args.scale, args.preset)
        finally:
            done.set()
            killer.join()
        hang_s, hang_limit, hang_why = hang_to_record(root / "hang", args.preset, args.hang_margin)
    device_s = one[0].graded.record.wall_time_s if one[0].graded else None
    print(
        f"fleet benchmark: {args.cards} simulated H100s, preset {args.preset}, "
        f"wall_time_scale {args.scale} (each card sleeps {args.scale} s per simulated device "
        f"second, so its wall time is dominated by device time as on a real GPU; "
        f"{device_s} s of simulated device time per card), {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rows = [
        ("1 card alone", one_s, letters(one)),
        (f"{args.cards} cards in parallel", many_s, letters(many)),
        (f"{args.cards} cards, GPU 3 SIGKILLed in soak", kill_s, letters(killed)),
    ]
    print(f"{'scenario':38} {'wall s':>8} {'x one':>7}  grades")
    for name, wall, grades in rows:
        print(f"{name:38} {wall:8.2f} {wall / one_s:7.2f}  {grades}")
    ratio = many_s / one_s
    print(f"supervision cost: {many_s - one_s:.1f} s more for {args.cards} cards than for one")
    print(f"parallel / one: {ratio:.2f} (target <= 1.30: {'met' if ratio <= 1.3 else 'NOT met'})")
    victim = killed[3].graded.record if killed[3].graded else None
    kept = [t.name for t in victim.tests if t.status == "passed"] if victim else []
    others = all(o.graded and o.graded.record.complete for i, o in enumerate(killed) if i != 3)
    print(
        f"kill scenario: GPU 3 {victim.grade.letter if victim and victim.grade else 'no record'}"
        f" ({victim.interrupted if victim else '-'}), kept {len(kept)} tests ({', '.join(kept)});"
        f" the other {args.cards - 1} complete: {'yes' if others else 'NO'}"
    )
    print(
        f"hang scenario: fp32 never returns; INCOMPLETE record {hang_s:.1f} s after the test "
        f"started (limit: budget x {WATCHDOG_SCALE:g} + {args.hang_margin:g} s margin = "
        f"{hang_limit:.0f} s; {hang_s - hang_limit:+.1f} s past it): {hang_why}"
    )


if __name__ == "__main__":
    main()
