"""Print a pip constraints file pinning each requirement of setup.cfg to its declared floor.

Usage: ``python .ci/floors.py [--extras dev,ray] [--skip torch] > floors.txt``

Every requirement of ``install_requires`` (and of the named extras) must declare a ``>=`` floor:
one without is reported and the script exits 1, so an unpinned floor cannot slip into CI
unchecked. ``--skip NAME`` leaves a distribution out (CI installs torch from the machine's one
CPU wheel instead of the floor release, which only exists there as a CUDA build).
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(?P<specs>[^;]*)")


def requirements(extras: list[str]) -> list[str]:
    """The non-empty requirement lines of install_requires and the given extras, in file order."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    blocks = [config["options"]["install_requires"]]
    blocks += [config["options.extras_require"][extra] for extra in extras]
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def floor_pins(lines: list[str], skip: set[str]) -> tuple[list[str], list[str]]:
    """(``name==floor`` pins, requirement lines that declare no floor)."""
    pins, missing = [], []
    for line in lines:
        match = REQUIREMENT.match(line)
        name = match["name"] if match else line
        if name.lower() in skip:
            continue
        floors = [spec.strip()[2:].strip() for spec in match["specs"].split(",") if spec.strip().startswith(">=")]
        if floors:
            pins.append(f"{name}=={floors[0]}")
        else:
            missing.append(line)
    return pins, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="comma-separated extras whose requirements are pinned too")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="distribution left unpinned")
    args = parser.parse_args(argv)
    extras = [extra for extra in args.extras.split(",") if extra]
    pins, missing = floor_pins(requirements(extras), {name.lower() for name in args.skip})
    if missing:
        print(f"floors.py: error: {SETUP_CFG.name} declares no >= floor for: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
