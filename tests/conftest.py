"""Shared fixtures: simulated cards from TOML snippets, and graded runs that several test files
reuse (a grade is the expensive thing here, so each distinct grade command runs once per session).

Nothing here needs a GPU. Tests that do are marked `gpu` and skip themselves in their own file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from simkit import H100, CliRun, GradedRuns, card_toml, invoke

from gpuhealth.certificate.keys import PASSPHRASE_ENV, SigningKey, generate_key
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import load_card


@pytest.fixture(scope="session", autouse=True)
def _own_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the user's gpuhealth settings (~/.config/gpuhealth: the signing
    key, the pinned keys): the whole session gets an empty settings folder of its own."""
    names = ("GPUHEALTH_CONFIG_DIR", "GPUHEALTH_KEY_FILE", "GPUHEALTH_KEY_PASSPHRASE")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["GPUHEALTH_CONFIG_DIR"] = str(tmp_path_factory.mktemp("gpuhealth-config"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _own_results_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test grades into a results database of its own: a grade looks the card up there
    (card_history.py), and the simulated cards of different tests share serials and UUIDs while
    their faults (remapped rows, ECC counts) differ, which would read as one card whose counters
    went down."""
    monkeypatch.setenv("GPUHEALTH_DB", str(tmp_path / "results.sqlite"))


@pytest.fixture
def write_card(tmp_path: Path) -> Callable[..., Path]:
    """write_card(faults_toml, model=..., header=..., name=...) -> path of a card spec file."""
    counter = iter(range(1000))

    def write(faults: str = "", model: str = H100, header: str = "", name: str = "") -> Path:
        path = tmp_path / (name or f"card{next(counter)}.toml")
        path.write_text(card_toml(faults, model, header), encoding="utf-8")
        return path

    return write


@pytest.fixture
def sim(write_card: Callable[..., Path]) -> Iterator[Callable[..., SimBackend]]:
    """sim(faults_toml, model=..., header=...) -> a SimBackend for a card with those faults."""
    opened: list[SimBackend] = []

    def make(faults: str = "", model: str = H100, header: str = "") -> SimBackend:
        backend = SimBackend(load_card(str(write_card(faults, model, header))))
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


@pytest.fixture(scope="session")
def graded(tmp_path_factory: pytest.TempPathFactory) -> GradedRuns:
    return GradedRuns(tmp_path_factory.mktemp("graded"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliRun]:
    """The README's first command, as typed (`gpuhealth grade --demo`, no --out): a standard
    grade of the healthy simulated H100 into ./gpuhealth-runs/<run id>."""
    cwd = tmp_path_factory.mktemp("readme")
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        start = time.perf_counter()
        result = invoke("grade", "--demo")
        wall = time.perf_counter() - start
    finally:
        os.chdir(previous)
    folders = list((cwd / "gpuhealth-runs").iterdir()) if (cwd / "gpuhealth-runs").is_dir() else []
    assert len(folders) == 1, f"expected one run folder, found {folders}\n{result.output}"
    yield CliRun(result, folders[0], wall)


@pytest.fixture
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A settings folder of the test's own (keys, pinned signers), no key file or passphrase from
    the environment; test_keys.py and test_signing.py use it for every test."""
    config = tmp_path / "config"
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(config))
    monkeypatch.delenv("GPUHEALTH_KEY_FILE", raising=False)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return config


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    """A fresh signing key under the test's folder."""
    return generate_key(tmp_path / "keys" / "signing.key")
