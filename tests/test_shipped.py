"""The archive of shipped rules (gpuhealth/data/shipped): every released version's policy and
profiles, so that verify judges any record under the rules its version shipped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gpuhealth import __version__
from gpuhealth.judge import shipped
from gpuhealth.judge.grading import DEFAULT_POLICY, load_policy
from gpuhealth.judge.profiles import PROFILES_DIR, builtin_profiles
from gpuhealth.models import SCHEMA_VERSION


def test_the_archive_is_in_step_with_the_live_policy_and_profiles() -> None:
    assert shipped.check_current() == [], "run: python -m gpuhealth.judge.shipped --record"
    release = shipped.current_release()
    assert release.version == __version__ and release.schema_version == SCHEMA_VERSION
    assert release.policy_sha256 == load_policy().sha256
    assert release.policy().text == DEFAULT_POLICY.read_bytes().decode("utf-8")
    assert {p.key for p in release.profiles()} == {p.key for p in builtin_profiles()}
    assert len(release.profile_sha256) == len(list(PROFILES_DIR.glob("*.toml")))


def test_every_archived_file_is_named_by_its_sha256_and_every_named_file_is_there() -> None:
    names = {path.stem for path in shipped.FILES_DIR.glob("*.toml")}
    named = {
        sha
        for release in shipped.releases().values()
        for sha in (release.policy_sha256, *release.profile_sha256.values())
    }
    assert names == named, "files no version ships (python -m gpuhealth.judge.shipped --record)"
    for path in shipped.FILES_DIR.glob("*.toml"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem, path.name
    for release in shipped.releases().values():
        assert release.policy_sha256 in names
        assert set(release.profile_sha256.values()) <= names


def test_every_released_version_is_kept() -> None:
    versions = shipped.releases()
    assert set(shipped.RELEASED) | {__version__} <= set(versions)
    assert versions["0.1.0"].schema_version == 1
    # the policy 0.1.0 shipped in its final form: the policy its last records name
    assert versions["0.1.0"].policy_sha256.startswith("acf2beed7071")


def test_a_released_versions_rules_are_never_recorded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shipped, "__version__", "0.1.0")
    with pytest.raises(SystemExit, match="released"):
        shipped.record_current()


def test_a_changed_live_policy_is_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    changed = tmp_path / "default.toml"
    changed.write_text(DEFAULT_POLICY.read_text(encoding="utf-8") + "\n# edited\n", "utf-8")
    monkeypatch.setattr(shipped, "DEFAULT_POLICY", changed)
    assert shipped.check_current() != []


def test_shipped_or_custom_is_decided_by_the_bytes() -> None:
    text = DEFAULT_POLICY.read_bytes().decode("utf-8")
    assert __version__ in shipped.versions_shipping(shipped.sha256_text(text), "policy")
    assert shipped.versions_shipping(shipped.sha256_text(text + " "), "policy") == ()
    # a profile's hash is not a policy's
    assert shipped.versions_shipping(shipped.sha256_text(text), "profile") == ()


def test_the_index_is_plain_json_sorted() -> None:
    text = shipped.INDEX_FILE.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
