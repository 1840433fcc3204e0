"""Read the unit files of systemd/ the way systemd does (repeated keys kept, continuation
lines joined, comments only on their own lines) and build a throwaway root to verify them in."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = ("redisq-worker@.service", "redisq-scheduler.service", "redisq-web.service")
ALL = (*SERVICES, "redisq.target")
INSTALL_PREFIX = "/opt/redisq/.venv/bin/"
# What the stub root needs besides our units: the targets every service is ordered against.
BASE_TARGETS = ("sysinit", "basic", "shutdown", "network-online", "multi-user")


@dataclass(frozen=True)
class Directive:
    section: str
    key: str
    value: str
    line: int  # 1-based line of the directive's first line
    comments: tuple[str, ...]  # the comment lines directly above it, if any


def parse(name: str) -> list[Directive]:
    """Every directive of ``systemd/<name>``, in order."""
    out: list[Directive] = []
    section, comments, pending = "", [], ""
    start = 0
    for number, raw in enumerate((UNITS / name).read_text().splitlines(), 1):
        line = raw.strip()
        if pending:  # a continuation of the previous line
            pending += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                out.append(_directive(section, pending, start, comments))
                pending, comments = "", []
            continue
        if not line:
            comments = []
        elif line.startswith(("#", ";")):
            comments.append(line.lstrip("#; "))
        elif line.startswith("["):
            section, comments = line.strip("[]"), []
        elif line.endswith("\\"):
            pending, start = line.rstrip("\\").strip(), number
        else:
            out.append(_directive(section, line, number, comments))
            comments = []
    return out


def _directive(section: str, text: str, line: int, comments: list[str]) -> Directive:
    key, _, value = text.partition("=")
    return Directive(section, key.strip(), value.strip(), line, tuple(comments))


def values(name: str, key: str, section: str = "Service") -> list[str]:
    return [d.value for d in parse(name) if d.section == section and d.key == key]


def value(name: str, key: str, section: str = "Service") -> str:
    found = values(name, key, section)
    assert len(found) == 1, f"{name}: expected one {key}=, found {found}"
    return found[0]


def seconds(text: str) -> float:
    """A systemd time span as used in our units ("45", "45s", "2min")."""
    text = text.strip()
    for suffix, factor in (("min", 60.0), ("ms", 0.001), ("s", 1.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def executables(name: str) -> list[str]:
    """The absolute programs the unit's Exec*= lines run (prefixes like "-" and "@" dropped)."""
    out = []
    for d in parse(name):
        if d.key.startswith("Exec"):
            program = shlex.split(d.value)[0].lstrip("-@:+!")
            out.append(program)
    return out


def make_root(root: Path) -> Path:
    """A file system root holding the units in /etc/systemd/system, stub executables for every
    program they run, and the base targets, so ``systemd-analyze --root`` checks the units as
    they would be installed (paths unchanged) without touching this machine."""
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name in ALL:
        (unit_dir / name).write_text((UNITS / name).read_text())
        for program in executables(name):
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    for target in BASE_TARGETS:
        (unit_dir / f"{target}.target").write_text(f"[Unit]\nDescription={target}\n")
    return unit_dir
