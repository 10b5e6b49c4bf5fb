"""The lock is the tested set: it agrees with pyproject.toml, and runs point at it when a library fails.

`requirements.lock` pins every transitive package at the version the tests last passed on; the
README's install line and `.ci/run` install from it. These tests fail when one side is edited alone:
a dependency added to (or narrowed in) pyproject.toml that the lock does not satisfy, a lock entry
edited by hand, or a lock that no longer resolves from pyproject.toml's ranges.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from frankenstein_tasks import tested_set

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
TEST_EXTRA = "test"


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][TEST_EXTRA]]


def test_every_dependency_is_locked_at_a_version_it_allows():
    lock = tested_set.read_lock(LOCK)
    problems = []
    for req in pyproject_requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        locked = lock.get(canonicalize_name(req.name))
        if locked is None:
            problems.append(f"{req} is in pyproject.toml but not in the lock")
        elif not req.specifier.contains(locked, prereleases=True):
            problems.append(f"pyproject.toml asks for {req} but the lock pins {req.name}=={locked}")
    assert not problems, "; ".join(problems) + " (refresh the lock: README, 'Installing and the lock')"


def test_lock_holds_the_known_breaks_out():
    """The caps pyproject.toml sets for known breaks are what the lock installs (independent of the caps' text)."""
    from packaging.version import Version

    lock = tested_set.read_lock(LOCK)
    # lmms-eval 0.7.3 imports filelock._api in every evaluation; filelock 4.3.0 removed that module.
    assert Version(lock["filelock"]) < Version("4.3.0")
    assert lock["lmms-eval"] == "0.7.3" and lock["transformers"].startswith("5.23.")


def _uv() -> str | None:
    return shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def test_lock_is_what_pyproject_resolves_to(tmp_path):
    """Resolving pyproject.toml again, with the lock's pins as preferences, changes nothing.

    uv keeps an existing output file's pins where they still satisfy the requirements, so the result
    equals the lock exactly unless pyproject.toml gained, lost or narrowed a dependency, or a pinned
    release can no longer be resolved. This needs the package index (as installing does); only an
    unreachable index skips it.
    """
    uv = _uv()
    if uv is None:
        pytest.fail("uv is not installed; it comes with the test extra (pip install -c requirements.lock -e '.[test]')")
    again = tmp_path / "requirements.lock"
    shutil.copy(LOCK, again)
    done = subprocess.run(
        [uv, "pip", "compile", "pyproject.toml", "--extra", TEST_EXTRA, "--universal", "--quiet",
         "-o", str(again), "--custom-compile-command", LOCK.read_text().splitlines()[1].lstrip("# ").strip()],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0 and any(s in done.stderr for s in ("Could not connect", "dns error", "Failed to fetch")):
        pytest.skip(f"the package index is unreachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"the lock no longer resolves from pyproject.toml: {done.stderr[-2000:]}"
    old, new = tested_set.read_lock(LOCK), tested_set.read_lock(again)
    changed = sorted(
        f"{n}: {old.get(n, 'absent')} -> {new.get(n, 'absent')}" for n in set(old) | set(new) if old.get(n) != new.get(n)
    )
    assert not changed, "pyproject.toml and the lock disagree (" + "; ".join(changed) + "): refresh the lock"
    assert again.read_text() == LOCK.read_text(), "the lock's text differs from a fresh resolution (markers or order)"


def test_doctor_flags_what_is_outside_the_tested_set(tmp_path, monkeypatch, capsys):
    from frankenstein_tasks.commands import doctor

    installed = tested_set.installed_versions()
    lock = tmp_path / "requirements.lock"
    # The tested set as installed, except filelock at the release that broke lmms-eval.
    lines = [f"{name}=={version}" for name, version in sorted(installed.items()) if name != "filelock"]
    lock.write_text("\n".join(lines + ["filelock==4.3.2    # the broken release", ""]))
    monkeypatch.setattr(tested_set, "lock_path", lambda: lock)

    assert doctor.run(argparse.Namespace(all=False, strict=True)) == 1
    out = capsys.readouterr().out
    flagged = [line for line in out.splitlines() if "outside the tested set" in line and line.startswith("  ")]
    assert [line.split()[0] for line in flagged] == ["filelock"]
    assert f"filelock {installed['filelock']} (lock 4.3.2)" in out

    lock.write_text("\n".join(lines + [f"filelock=={installed['filelock']}", ""]))
    assert doctor.run(argparse.Namespace(all=True, strict=True)) == 0
    assert f"all {len(lines) + 1} locked packages are at their tested versions" in capsys.readouterr().out


def test_markers_of_other_platforms_are_left_out(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "numpy==1.0.0 ; python_full_version < '3.0'\n"
        "numpy==2.0.0 ; python_full_version >= '3.0'\n"
        "    # via torch\n"
        "colorama==0.4.6 ; sys_platform == 'nonexistent'\n"
    )
    assert tested_set.read_lock(lock) == {"numpy": "2.0.0"}


def test_a_library_failure_in_a_run_names_the_stage_and_the_versions(tiny_trio, tmp_path, monkeypatch, capsys):
    """An ImportError inside a stage is a bug, not bad input: one line first, then the traceback."""
    from dataclasses import replace

    from frankenstein_tasks.run import runner, stages
    from frankenstein_tasks.run.config import RunConfig

    def broken_library(ctx, folder):
        raise ModuleNotFoundError("No module named 'filelock._api'")

    monkeypatch.setitem(stages.STAGES, "delta", replace(stages.STAGES["delta"], run=broken_library))
    config = RunConfig.model_validate({
        "recipe": "Tiny", "out": str(tmp_path / "out"), "offline": True, "device": "cpu", "stages": ["delta"],
        "models": {"base": str(tiny_trio["base"]), "in": str(tiny_trio["in"]), "rl": str(tiny_trio["rl"])},
    })
    with pytest.raises(ModuleNotFoundError, match="filelock._api"):
        runner.run(config, report=False, say=lambda line: None)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("frankenstein: stage delta failed with an unexpected ModuleNotFoundError")
    assert "frankenstein doctor" in err[0] or "outside the tested set" in err[0]
    assert not (tmp_path / "out" / "delta").exists()
