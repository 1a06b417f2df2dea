"""How a run of several cards ended: each card's outcome, the letters, the summary line and the
exit code (gpuhealth/errors.py says why each)."""

from __future__ import annotations

from dataclasses import dataclass

from gpuhealth.errors import EXIT_BAD_CARD, EXIT_INCOMPLETE, EXIT_OK
from gpuhealth.measure.runner import GradedCard
from gpuhealth.models import RunRecord

GRADE_ORDER = ("A", "B", "C", "D", "F", "INCOMPLETE")


@dataclass(frozen=True)
class CardOutcome:
    """One GPU's end: its graded record, or why there is none (the card was never identified)."""

    gpu: int
    graded: GradedCard | None
    error: str | None = None
    exit_code: int = EXIT_INCOMPLETE


def outcomes_exit_code(outcomes: list[CardOutcome]) -> int:
    """A run's exit code: a lone card with no record exits as its error says (2: bad input, 3:
    environment); otherwise the grades decide (exit_code_for_letters), a card with no record
    counting as INCOMPLETE."""
    if len(outcomes) == 1 and outcomes[0].graded is None:
        return outcomes[0].exit_code
    letters = [
        letter_of(o.graded.record) if o.graded is not None else "INCOMPLETE" for o in outcomes
    ]
    return exit_code_for_letters(letters)


def grade_counts(letters: list[str]) -> dict[str, int]:
    """How many cards got each grade, in grade order (only the grades that occur)."""
    return {g: letters.count(g) for g in GRADE_ORDER if g in letters}


def summary_line(letters: list[str]) -> str:
    """One line across cards: "8 cards: 6 A, 1 D, 1 INCOMPLETE"."""
    counts = ", ".join(f"{n} {g}" for g, n in grade_counts(letters).items())
    noun = "card" if len(letters) == 1 else "cards"
    return f"{len(letters)} {noun}: {counts}"


def exit_code_for_letters(letters: list[str]) -> int:
    """The run's exit code from its cards' grades (gpuhealth/errors.py says why): any card not
    measured (INCOMPLETE) gives 3, else any D or F gives 1, else 0."""
    if not letters or "INCOMPLETE" in letters:
        return EXIT_INCOMPLETE
    if any(letter in ("D", "F") for letter in letters):
        return EXIT_BAD_CARD
    return EXIT_OK


def letter_of(record: RunRecord) -> str:
    return record.grade.letter if record.grade else "INCOMPLETE"
