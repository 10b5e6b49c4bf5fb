"""frankenstein doctor: the installed versions of the stack, against the tested set (the lock)."""

from __future__ import annotations

import argparse

from frankenstein_tasks import tested_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Print the Python, platform and accelerator, and the installed version of each package the "
        "project builds on (torch, transformers, lmms-eval, lm-eval, mergekit, datasets, filelock, ...) next "
        "to the version in requirements.lock, the set the tests last passed on. A package outside the "
        "tested set is flagged: the first thing to check when a run fails inside a library."
    )
    p.add_argument("--all", action="store_true", help="every package of the lock, not only the stack")
    p.add_argument(
        "--strict", action="store_true",
        help="exit with status 1 when any locked package is missing or differs (CI checks the install this way)",
    )


def run(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("frankenstein-vlm")
    except PackageNotFoundError:
        own = "not installed (running from a source tree)"
    print(f"frankenstein-vlm {own}")
    print(tested_set.environment_line())
    path = tested_set.lock_path()
    installed = tested_set.installed_versions()
    if path is None:
        print("no requirements.lock next to the source tree (installed from a wheel?): versions only")
        for name in tested_set.STACK:
            print(f"  {name:<16} {installed.get(name, '-')}")
        return 0
    lock = tested_set.read_lock(path)
    rows = tested_set.compare(lock, installed, None if args.all else list(tested_set.STACK))
    print(f"tested set: {path}")
    print(f"  {'package':<24} {'installed':<14} {'locked':<14} status")
    for row in rows:
        flag = "" if row.status == "ok" else "  <-- outside the tested set"
        print(f"  {row.name:<24} {row.installed or '-':<14} {row.locked or '-':<14} {row.status}{flag}")
    outside = [r for r in tested_set.compare(lock, installed) if r.status != "ok"]
    if outside:
        names = ", ".join(f"{r.name} {r.installed or 'missing'} (lock {r.locked})" for r in outside[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        print(f"{len(outside)} locked package(s) differ from the tested set: {names}{more}; "
              "reinstall with the README's install command (pip install -c requirements.lock ...)")
        return 1 if args.strict else 0
    print(f"all {len(lock)} locked packages are at their tested versions")
    return 0
