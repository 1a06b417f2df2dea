"""What a grade command asks for, checked before any worker starts: the plan, one spec per card
(with the options its worker grades under), and a resumed run's spec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gpuhealth.errors import EnvironmentUnusable, InputError
from gpuhealth.measure.runfolder import check_writable, refuse_existing
from gpuhealth.measure.runner import GradeOptions
from gpuhealth.models import RunRecord

WATCHDOG_SCALE = 1.5  # a test may run this many times its time budget (device time) ...
WATCHDOG_MARGIN_S = 60.0  # ... plus this much wall time (compiles, host-side checks, journaling)
STOP_GRACE_S = 60.0  # after a stop, a worker that has not ended by then is killed
LIMIT_ENV = {
    "watchdog_scale": "GPUHEALTH_WATCHDOG_SCALE",
    "watchdog_margin_s": "GPUHEALTH_WATCHDOG_MARGIN_S",
    "stop_grace_s": "GPUHEALTH_STOP_GRACE_S",
}


@dataclass(frozen=True)
class Limits:
    """The Supervisor's time limits; the environment may set them (LIMIT_ENV)."""

    watchdog_scale: float = WATCHDOG_SCALE
    watchdog_margin_s: float = WATCHDOG_MARGIN_S
    stop_grace_s: float = STOP_GRACE_S


def supervision_limits() -> Limits:
    """The limits, with those the environment sets (LIMIT_ENV) validated."""
    limits: dict[str, float] = {}
    for name, variable in LIMIT_ENV.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < 1e6:
            raise InputError(variable, None, f"expected a number of seconds >= 0, got {text!r}")
        limits[name] = value
    return Limits(**limits)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to grade one card: picklable (paths, not loaded objects)."""

    gpu: int
    backend: str
    sim_card: str | None
    out_dir: Path | None  # None: gpuhealth-runs/<run id>
    preset: str
    policy_path: Path | None = None
    profile_path: Path | None = None
    allow_busy: bool = False
    key_path: Path | None = None  # sign with this key; None: unsigned
    history_db: str | None = None  # GradeOptions.history_db
    force: bool = False  # overwrite a record already in out_dir
    resume: bool = False  # run the tests the record in out_dir is missing (gpuhealth resume)
    stop_grace_s: float = STOP_GRACE_S  # an orphaned worker stuck this long closes its journal
    tests: tuple[str, ...] | None = None  # GradeOptions.tests (--tests)
    soak_s: float | None = None  # GradeOptions.soak_s (--soak)
    clear: bool = True  # GradeOptions.clear (--no-clear: False)


def options_for(spec: WorkerSpec) -> GradeOptions:
    from gpuhealth.certificate.keys import load_key
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.judge.profiles import load_profile
    from gpuhealth.presets import preset, with_soak

    return GradeOptions(
        preset=with_soak(preset(spec.preset), spec.soak_s),
        policy=load_policy(spec.policy_path),
        profile=load_profile(spec.profile_path) if spec.profile_path else None,
        out_dir=spec.out_dir,
        allow_busy=spec.allow_busy,
        signer=load_key(spec.key_path) if spec.key_path else None,
        history_db=spec.history_db,
        force=spec.force,
        tests=spec.tests,
        soak_s=spec.soak_s,
        clear=spec.clear,
    )


@dataclass(frozen=True)
class GradePlan:
    """What `gpuhealth grade` was asked to grade, before it is checked."""

    backend: str
    indexes: list[int]
    sim_cards: tuple[str, ...]
    preset: str
    out_dir: Path | None
    profile_path: Path | None
    policy_path: Path | None
    allow_busy: bool
    key_path: Path | None
    force: bool
    history_db: str | None = None  # GradeOptions.history_db: "" the default database, None none
    tests: tuple[str, ...] | None = None  # --tests, parsed (presets.parse_tests)
    soak_s: float | None = None  # --soak
    clear: bool = True  # False: --no-clear


def grade_specs(plan: GradePlan) -> list[WorkerSpec]:
    """One WorkerSpec per GPU, every input checked first (before any worker starts): the
    preset, the sim cards, the policy, profile and key, and each run folder (no record there
    unless --force: exit 2; writable: exit 3)."""
    from gpuhealth.measure.backends.simcards import load_card
    from gpuhealth.measure.runner import DEFAULT_RUNS_DIR
    from gpuhealth.presets import preset, with_soak

    with_soak(preset(plan.preset), plan.soak_s)  # a bad --soak is refused here
    if plan.soak_s is not None and plan.tests is not None and "soak" not in plan.tests:
        # a burn-in asked for that would not run: the user would believe the card soaked
        raise InputError(
            "--soak",
            None,
            f"expected the soak among --tests (got {','.join(plan.tests)}): add soak to --tests, "
            "or leave --soak out",
        )
    for name in {plan.sim_cards[i] for i in plan.indexes} if plan.sim_cards else ():
        load_card(name)
    single = len(plan.indexes) == 1
    specs = [
        WorkerSpec(
            gpu=index,
            backend="sim" if plan.sim_cards else plan.backend,
            sim_card=plan.sim_cards[index] if plan.sim_cards else None,
            out_dir=_folder_for(plan.out_dir, index, single),
            preset=plan.preset,
            policy_path=plan.policy_path,
            profile_path=plan.profile_path,
            allow_busy=plan.allow_busy,
            key_path=plan.key_path,
            force=plan.force,
            history_db=plan.history_db,
            stop_grace_s=supervision_limits().stop_grace_s,
            tests=plan.tests,
            soak_s=plan.soak_s,
            clear=plan.clear,
        )
        for index in plan.indexes
    ]
    options_for(specs[0])  # the policy, profile and key load: a bad one is one error, here
    for spec in specs:
        if spec.out_dir is not None:
            refuse_existing(spec.out_dir, plan.force)
    for spec in specs:
        check_writable(spec.out_dir or DEFAULT_RUNS_DIR)
    return specs


def _folder_for(out_dir: Path | None, index: int, single: bool) -> Path | None:
    if out_dir is None or single:
        return out_dir
    return out_dir / f"gpu{index}"


def resume_spec(
    record: RunRecord,
    folder: Path,
    backend: str,
    sim_card: str | None,
    profile_path: Path | None,
    policy_path: Path | None,
    allow_busy: bool,
    key_path: Path | None,
    clear: bool = True,
) -> WorkerSpec:
    """The worker that resumes a record on its card: the backend and card the record names,
    unless --backend/--sim-card name others; clear False: --no-clear."""
    check_recorded_run(record, folder / "run.json")
    name = backend if backend != "auto" or sim_card else record.backend
    card = sim_card or (record.identity.sim_card if name == "sim" else None)
    spec = WorkerSpec(
        gpu=record.identity.index,
        backend=name,
        sim_card=card,
        out_dir=folder,
        preset=record.preset,
        policy_path=policy_path,
        profile_path=profile_path,
        allow_busy=allow_busy,
        key_path=key_path,
        resume=True,
        stop_grace_s=supervision_limits().stop_grace_s,
        clear=clear,
    )
    options_for(spec)
    check_writable(folder)
    return spec


def check_recorded_run(record: RunRecord, path: Path) -> None:
    """The preset, soak length and tests a resumed run goes on with are the record's: a bad one is
    the record's error, named by its file and field (never "--soak", which was not given)."""
    from gpuhealth.presets import TEST_ORDER, preset, with_soak

    field = "preset"
    try:
        chosen_preset = preset(record.preset)
        field = "soak_duration_s"
        with_soak(chosen_preset, record.soak_duration_s)
    except InputError as error:
        raise InputError(str(path), field, error.expected) from None
    chosen = record.tests_selected
    if chosen is not None and (not chosen or any(t not in TEST_ORDER for t in chosen)):
        raise InputError(
            str(path),
            "tests_selected",
            f"expected test names from: {', '.join(TEST_ORDER)}, got {', '.join(chosen) or 'none'}",
        )


def check_expected(visible: int, expected: int | None) -> None:
    """Fewer GPUs than a node should have is an environment failure (exit 3), found before
    anything is measured: the message names the GPUs that are missing."""
    if expected is None or visible >= expected:
        return
    missing = ", ".join(f"GPU {i}" for i in range(visible, expected))
    raise EnvironmentUnusable(
        f"--expect-gpus {expected}: only {visible} GPU(s) visible; missing: {missing}",
        hint="check nvidia-smi, the driver and that every card is seated and powered",
    )
