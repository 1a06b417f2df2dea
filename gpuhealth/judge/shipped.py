"""The rules each gpuhealth version shipped: its default policy and its reference profiles.

A buyer trusts gpuhealth's published rules, not the seller's files. A record embeds the policy and
profile it was judged under (models.JudgedUnder); `verify` judges it again under them and under the
rules that the gpuhealth version named in the record shipped for the card's model, so these are
kept for every version, old records included:

    gpuhealth/data/shipped/index.json          version -> schema version, policy and profile hashes
    gpuhealth/data/shipped/files/<sha256>.toml each file once, named by the sha256 of its bytes

The current version's entry must equal the live files (gpuhealth/data/policies/default.toml and
gpuhealth/judge/profiles/data/*.toml; a test checks it). After changing either, record them:

    python -m gpuhealth.judge.shipped --record      (refuses to change a released version's entry)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from gpuhealth import __version__
from gpuhealth.judge.grading import DEFAULT_POLICY, Policy, policy_from_text
from gpuhealth.judge.profiles import PROFILES_DIR, Profile, match_profile, profile_from_text
from gpuhealth.models import SCHEMA_VERSION, CardIdentity, Grade, RulesFile
from gpuhealth.resources import DATA_DIR

SHIPPED_DIR = DATA_DIR / "shipped"
INDEX_FILE = SHIPPED_DIR / "index.json"
FILES_DIR = SHIPPED_DIR / "files"
# Released versions: their entries are history and never change. Only __version__ (unreleased
# while it is not listed here) may be recorded again.
RELEASED = ("0.1.0",)


@dataclass(frozen=True)
class Release:
    version: str
    schema_version: int  # the record format this version writes
    policy_sha256: str
    profile_sha256: dict[str, str]  # profile key -> sha256

    def policy(self) -> Policy:
        return _shipped_policy(self.policy_sha256)

    def profiles(self) -> list[Profile]:
        return [_shipped_profile(sha) for _, sha in sorted(self.profile_sha256.items())]

    def profile_for(self, identity: CardIdentity) -> Profile | None:
        """The profile this version matches to the card (by NVML name and memory size)."""
        return match_profile(identity, self.profiles())


def policy_file(policy: Policy) -> RulesFile:
    """A policy as a record embeds it."""
    return RulesFile(
        policy.label, policy.sha256, policy.text, versions_shipping(policy.sha256, "policy")
    )


def profile_file(profile: Profile | None) -> RulesFile | None:
    """A profile as a record embeds it: the file's text, or a built profile rendered as TOML."""
    if profile is None:
        return None
    text = profile.text
    if text is None:
        from gpuhealth.judge.profiles.render import render_profile

        text = render_profile(profile, ["a profile built in memory, rendered by gpuhealth"])
    sha = sha256_text(text)
    return RulesFile(profile.key, sha, text, versions_shipping(sha, "profile"))


def describe_rules(policy: RulesFile, profile: RulesFile | None) -> str:
    """Rules that are not a version's default for the card, in words: "a custom policy 'X v1'
    (sha256 abc…) and the shipped profile 'h200-sxm-141gb'"."""

    def one(file: RulesFile, kind: str) -> str:
        if versions_shipping(sha256_text(file.text), kind):
            return f"the shipped {kind} {file.name!r}"
        return f"a custom {kind} {file.name!r} (sha256 {file.sha256[:12]}…)"

    parts = [one(policy, "policy")] + ([one(profile, "profile")] if profile else ["no profile"])
    return " and ".join(parts)


def rules_banner(certified: Grade, used: str, version: str, default: Grade) -> str:
    """What the certificate and `verify` say first about a record judged under other rules."""
    because = "; ".join(f"{r.rule}: {r.message}" for r in default.reasons[:3])
    text = (
        f"graded {certified.letter} under {used}; under the shipped rules of gpuhealth "
        f"{version}: {default.letter}"
    )
    return text + (f", because {because}" if default.letter != certified.letter else "")


def current_release() -> Release:
    found = release(__version__)
    if found is None:  # a packaging mistake, caught by tests/test_shipped.py
        raise RuntimeError(f"{INDEX_FILE} has no entry for gpuhealth {__version__}")
    return found


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def releases() -> dict[str, Release]:
    data = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    return {
        version: Release(
            version,
            int(entry["schema_version"]),
            str(entry["policy"]),
            {str(k): str(v) for k, v in entry["profiles"].items()},
        )
        for version, entry in data["versions"].items()
    }


def release(version: str) -> Release | None:
    return releases().get(version)


# Parsed once per process: shipped files never change, and policies and profiles are frozen.
@functools.cache
def _shipped_policy(sha256: str) -> Policy:
    return policy_from_text(file_text(sha256), f"shipped policy {sha256[:12]}")


@functools.cache
def _shipped_profile(sha256: str) -> Profile:
    return profile_from_text(file_text(sha256), f"shipped profile {sha256[:12]}")


@functools.cache
def file_text(sha256: str) -> str:
    """A shipped file's text by its hash (KeyError when no version shipped it)."""
    path = FILES_DIR / f"{sha256}.toml"
    if not path.is_file():
        raise KeyError(sha256)
    return path.read_bytes().decode("utf-8")


def versions_shipping(sha256: str, kind: str) -> tuple[str, ...]:
    """The versions that shipped a file with these bytes as their policy or one of their
    profiles (kind "policy" or "profile"); empty for a custom file."""
    found = []
    for version, entry in releases().items():
        hashes = {entry.policy_sha256} if kind == "policy" else set(entry.profile_sha256.values())
        if sha256 in hashes:
            found.append(version)
    return tuple(found)


# --- keeping the archive ------------------------------------------------------------------------


def live_entry() -> tuple[dict[str, object], dict[str, str]]:
    """The current version's entry and its files (sha -> text), read from the live files."""
    texts: dict[str, str] = {}

    def add(path: Path) -> str:
        text = path.read_bytes().decode("utf-8")
        sha = sha256_text(text)
        texts[sha] = text
        return sha

    entry: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "policy": add(DEFAULT_POLICY),
        "profiles": {
            profile_from_text(path.read_bytes().decode("utf-8"), str(path)).key: add(path)
            for path in sorted(PROFILES_DIR.glob("*.toml"))
        },
    }
    return entry, texts


def record_current() -> list[str]:
    """Write the current version's entry and any new files; the lines say what changed."""
    data = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    if __version__ in RELEASED:
        raise SystemExit(
            f"gpuhealth {__version__} is released: its shipped rules are history and never "
            "change (bump the version first)"
        )
    entry, texts = live_entry()
    said = []
    FILES_DIR.mkdir(parents=True, exist_ok=True)
    for sha, text in sorted(texts.items()):
        path = FILES_DIR / f"{sha}.toml"
        if not path.exists():
            path.write_bytes(text.encode("utf-8"))
            said.append(f"added {path.name}")
    if data["versions"].get(__version__) != entry:
        data["versions"][__version__] = entry
        INDEX_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        said.append(f"recorded the rules of gpuhealth {__version__}")
    # files an earlier recording of this unreleased version left behind, no version's any more
    kept = {
        sha
        for entry_ in data["versions"].values()
        for sha in (entry_["policy"], *entry_["profiles"].values())
    }
    for path in sorted(FILES_DIR.glob("*.toml")):
        if path.stem not in kept:
            path.unlink()
            said.append(f"removed {path.name} (no version ships it)")
    return said


def check_current() -> list[str]:
    """What differs between the archive and the live files (empty: in step)."""
    entry, texts = live_entry()
    problems = []
    recorded = json.loads(INDEX_FILE.read_text(encoding="utf-8"))["versions"].get(__version__)
    if recorded != entry:
        problems.append(
            f"the shipped rules of gpuhealth {__version__} in {INDEX_FILE} differ from the live "
            "policy and profiles (python -m gpuhealth.judge.shipped --record)"
        )
    problems += [
        f"{sha}.toml is not archived" for sha in texts if not (FILES_DIR / f"{sha}.toml").is_file()
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuhealth.judge.shipped", description=__doc__)
    parser.add_argument("--record", action="store_true", help="record the live files")
    args = parser.parse_args(argv)
    if args.record:
        for line in record_current() or ["nothing to record: the archive is in step"]:
            print(line)
        return 0
    problems = check_current()
    for line in problems or ["the archive is in step with the live policy and profiles"]:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
