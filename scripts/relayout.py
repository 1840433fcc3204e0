"""Move the flat ``redisq/`` into layer subpackages and rewrite every reference to the old paths.

Run once, on a clean checkout of the old flat layout, from the repository root::

    .venv/bin/python scripts/relayout.py

It moves files with ``git mv`` (so history follows), writes the ``__init__.py`` of each layer
package, rewrites imports (``from .x import``, ``from . import x``, ``from redisq.x import``,
``from redisq import x``, ``import redisq.x``) in every Python file of the repository, rewrites
dotted paths (``redisq.x.Name``), file paths (``redisq/x.py``, ``redisq/lua/``), ``-m redisq.x``
and entry points (``redisq.x:main``) in code, docs, units and packaging, regenerates README's
Layout paragraph, sorts the touched imports with ruff, and stops. It does not commit or run tests.

What it leaves alone on purpose: logger names (``logging.getLogger("redisq.worker")``,
``logger="redisq.queue"``): they are public (log filters and dashboards use them), so a bare
``"redisq.x"`` string is never rewritten, only ``redisq.x.<attr>`` and the forms above.

A module of ``redisq/`` that is neither in :data:`MOVES` nor in :data:`STAY` (one added after this
table was written) stops the script before it changes anything: add it to the table and re-run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

# ---- The table ------------------------------------------------------------------------------
#: Old module under ``redisq/`` -> its new dotted path under ``redisq``.
MOVES: dict[str, str] = {
    # backend: Redis itself (keys, clients, wire format, Lua, records of jobs and workers).
    "keys": "backend.keys",
    "connection": "backend.connection",
    "failover": "backend.failover",
    "cluster": "backend.cluster",
    "wire": "backend.wire",
    "scripts": "backend.scripts",
    "backoff": "backend.backoff",
    "records": "backend.records",
    "registry": "backend.registry",
    "index": "backend.index",
    "urls": "backend.urls",
    "pressure": "backend.pressure",
    "server": "backend.embedded",
    # broker: queues and channels built on the backend.
    "queue": "broker.queue",
    "consumer": "broker.consumer",
    "leases": "broker.leases",
    "waits": "broker.waits",
    "resting": "broker.resting",
    "channel": "broker.channel",
    "cluster_pubsub": "broker.sharded",
    # worker: the daemons that run jobs and subscribers.
    "daemon": "worker.daemon",
    "worker": "worker.prodcons",
    "pubsub_worker": "worker.pubsub",
    "scheduler": "worker.scheduler",
    "recorder": "worker.recorder",
    "execute": "worker.execute",
    "pool": "worker.pool",
    "notify": "worker.notify",
    # ops: the command line and what operators read.
    "cli": "ops.cli",
    "stats": "ops.stats",
    "instance": "ops.instance",
    "up": "ops.up",
    "logs": "ops.logs",
}
#: Modules that stay at the top of the package (the public API and the pure base layer).
STAY: set[str] = {
    "__init__", "__main__", "errors", "config", "serializers", "periodic", "model",
    "app", "producer", "tasks", "job", "locks", "aio", "limits",
}
#: Directories under ``redisq/`` that move as a whole.
DIR_MOVES: dict[str, str] = {"lua": "backend/lua"}
#: The layer packages, lowest first, with the docstring of their ``__init__.py``.
LAYERS: dict[str, str] = {
    "backend": "The Redis seam: key schema, clients (URL, Sentinel, Cluster), the wire format, the Lua\n"
               "steps, backoff, and the records of jobs, queues and workers. Imports nothing above it.",
    "broker": "Queues and channels on top of the backend: reserve/ack/nack with leases, blocking waits,\n"
              "resting queues of failed nodes, durable pub/sub and its sharded (Cluster) form.",
    "worker": "The daemons: the prodcons worker, the pub/sub worker, the scheduler, and their parts\n"
              "(the pure execute step, the pool, the recorder, the systemd notifier).",
    "ops": "What operators run and read: the CLI, stats snapshots, systemd instances, ``redisq up``, logs.",
}
#: Literal edits that the general rules cannot express, on the new paths. Each must match once.
EDITS: dict[str, list[tuple[str, str]]] = {
    "redisq/backend/scripts.py": [('resources.files("redisq").joinpath("lua")',
                                   'resources.files("redisq.backend").joinpath("lua")')],
    "tests/ops/test_acl.py": [('ROOT / "redisq" / "lua"', 'ROOT / "redisq" / "backend" / "lua"')],
    "setup.cfg": [("redisq = lua/*.lua, py.typed", "redisq = py.typed\nredisq.backend = lua/*.lua")],
}
#: Files (besides ``*.py``) whose text is rewritten.
TEXT_GLOBS = ("*.md", "docs/*.md", "bench/*.md", "systemd/*", "Makefile", "setup.cfg",
              "pyproject.toml", ".ci/run", "tests/**/*.sh")
# ----------------------------------------------------------------------------------------------

ROOT = Path.cwd()
#: Files never rewritten: this script (its table names the old paths on purpose).
SKIP = {Path("scripts/relayout.py")}
PKG = ROOT / "redisq"
OLD = "|".join(sorted(MOVES, key=len, reverse=True))


def die(msg: str) -> None:
    print(f"relayout: {msg}", file=sys.stderr)
    sys.exit(1)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def check_tree() -> None:
    """Refuse a dirty tree, a tree already moved, or modules the table does not know."""
    if git("status", "--porcelain").strip():
        die("the work tree is not clean; commit or stash first")
    tracked = git("ls-files", "redisq").split()
    if any(p.startswith(f"redisq/{layer}/") for p in tracked for layer in LAYERS):
        die("redisq/ already has layer packages: this tree was moved already")
    unknown = set()
    for path in tracked:
        parts = Path(path).parts[1:]
        if len(parts) == 1 and parts[0].endswith(".py"):
            stem = parts[0][:-3]
            if stem not in MOVES and stem not in STAY:
                unknown.add(path)
        elif len(parts) > 1 and parts[0] not in DIR_MOVES:
            unknown.add(f"redisq/{parts[0]}/")
    missing = [f"redisq/{m}.py" for m in MOVES if f"redisq/{m}.py" not in tracked]
    if unknown or missing:
        lines = [f"  unknown: {p}  (add it to {'DIR_MOVES' if p.endswith('/') else 'MOVES or STAY'})"
                 for p in sorted(unknown)]
        lines += [f"  missing: {p}  (remove it from MOVES)" for p in missing]
        die("the table does not match redisq/:\n" + "\n".join(lines))


def new_module(dotted: str) -> str | None:
    """The new dotted name of an old ``redisq.x[.rest]`` module, or None when it does not move."""
    parts = dotted.split(".")
    if len(parts) >= 2 and parts[0] == "redisq" and parts[1] in MOVES:
        return ".".join(["redisq", *MOVES[parts[1]].split("."), *parts[2:]])
    return None


def module_of(path: Path) -> tuple[list[str], bool]:
    """Dotted parts of the module at ``path`` (relative to ROOT) and whether it is a package."""
    parts = list(path.with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return (parts[:-1] if is_pkg else parts), is_pkg


def moved_path(rel: Path) -> Path:
    """Where a file of the old layout lives after the move."""
    parts = rel.parts
    if len(parts) == 2 and parts[0] == "redisq" and parts[1].endswith(".py") and parts[1][:-3] in MOVES:
        return Path("redisq", *MOVES[parts[1][:-3]].split(".")).with_suffix(".py")
    if len(parts) > 2 and parts[0] == "redisq" and parts[1] in DIR_MOVES:
        return Path("redisq", DIR_MOVES[parts[1]], *parts[2:])
    return rel


# ---- Text rules (paths, dotted names, entry points) -----------------------------------------
def _dotted(m: re.Match[str]) -> str:
    return "redisq." + MOVES[m.group(1)]


def _path(m: re.Match[str]) -> str:
    return "redisq/" + MOVES[m.group(1)].replace(".", "/") + ".py"


TEXT_RULES: list[tuple[re.Pattern[str], object]] = [
    # redisq/x.py -> redisq/layer/y.py ; redisq/lua -> redisq/backend/lua
    (re.compile(rf"(?<![\w/.])redisq/({OLD})\.py\b"), _path),
    (re.compile(r"(?<![\w/.])redisq/(lua)\b"), lambda m: "redisq/" + DIR_MOVES["lua"]),
    # redisq.x.Name (attributes, mock targets, prose) and redisq.x:main (entry points)
    (re.compile(rf"(?<![\w.])redisq\.({OLD})(?=[.:][A-Za-z_])"), _dotted),
    # from redisq.x import / import redisq.x / -m redisq.x (code blocks, units, docstrings)
    (re.compile(rf"(?<=from )redisq\.({OLD})(?= import)"), _dotted),
    (re.compile(rf"(?<=import )redisq\.({OLD})\b(?!\.)"), _dotted),
    (re.compile(rf"(?<=-m )redisq\.({OLD})\b(?!\.)"), _dotted),
    # a test module's docstring head: """redisq.x: what is tested
    (re.compile(rf'(?<=""")redisq\.({OLD})(?=:)'), _dotted),
]


def rewrite_text(text: str) -> str:
    for pattern, repl in TEXT_RULES:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
    return text


# ---- Import statements ----------------------------------------------------------------------
def absolute_source(node: ast.ImportFrom, old_parts: list[str], is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = old_parts if is_pkg else old_parts[:-1]
    anchor = base[: len(base) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def relative(target: str, new_parts: list[str], is_pkg: bool) -> str:
    """``target`` written relative to the module ``new_parts``."""
    pkg = new_parts if is_pkg else new_parts[:-1]
    tparts = target.split(".")
    common = 0
    while common < min(len(pkg), len(tparts)) and pkg[common] == tparts[common]:
        common += 1
    return "." * (len(pkg) - common + 1) + ".".join(tparts[common:])


def alias_text(name: str, asname: str | None) -> str:
    return f"{name} as {asname}" if asname and asname != name else name


Where = tuple[list[str], bool]  # a module's dotted parts and whether it is a package


def rewrite_from(node: ast.ImportFrom, old: Where, new: Where) -> list[str] | None:
    """The statements replacing ``node``, or None to keep it verbatim."""
    src = absolute_source(node, *old)
    groups: dict[str, list[str]] = {}
    changed = False
    for alias in node.names:
        sub = new_module(f"{src}.{alias.name}") if src == "redisq" else None
        if sub:  # from redisq import keys -> from redisq.backend import keys
            parent, _, leaf = sub.rpartition(".")
            groups.setdefault(parent, []).append(alias_text(leaf, alias.asname or alias.name))
            changed = True
        else:
            moved = new_module(src)
            changed |= moved is not None
            groups.setdefault(moved or src, []).append(alias_text(alias.name, alias.asname))
    if not changed and (not node.level or old[0][:-1] == new[0][:-1]):
        return None
    out = []
    for source, names in groups.items():
        written = relative(source, *new) if node.level else source
        out.append(f"from {written} import {', '.join(names)}")
    return out


def rewrite_import(node: ast.Import) -> list[str] | None:
    names = []
    changed = False
    for alias in node.names:
        moved = new_module(alias.name)
        changed |= moved is not None
        names.append(alias_text(moved or alias.name, alias.asname))
    return [f"import {', '.join(names)}"] if changed else None


def rewrite_python(text: str, old: tuple[list[str], bool], new: tuple[list[str], bool]) -> str:
    """Rewrite import statements from the AST, and the text rules everywhere else."""
    lines = text.splitlines(keepends=True)
    spans: dict[int, tuple[int, list[str], str]] = {}  # first line -> (last line, new stmts, tail)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            stmts = rewrite_from(node, old, new)
        elif isinstance(node, ast.Import):
            stmts = rewrite_import(node)
        else:
            continue
        if stmts is None:
            continue
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        if lines[first][: node.col_offset].strip():
            die(f"an import shares its line with other code: line {node.lineno}")
        tail = lines[last][node.end_col_offset:]
        indent = lines[first][: node.col_offset]
        spans[first] = (last, [indent + s for s in stmts], tail)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in spans:
            last, stmts, tail = spans[i]
            out.extend(s + "\n" for s in stmts[:-1])
            out.append(stmts[-1] + (tail if tail.strip() else "\n"))
            i = last + 1
        else:
            out.append(rewrite_text(lines[i]))
            i += 1
    return "".join(out)


# ---- README's Layout paragraph --------------------------------------------------------------
def layout_paragraph() -> str:
    """README's Layout paragraph for the new tree, wrapped at 100 columns."""
    by_layer: dict[str, list[str]] = {}
    for new in MOVES.values():
        layer, _, mod = new.partition(".")
        by_layer.setdefault(layer, []).append(mod)
    def mods(layer: str) -> str:
        return ", ".join(sorted(by_layer[layer]))
    text = (
        "`redisq/` the library, in layers that import only downwards (checked by `lint-imports` in\n"
        "`make test`): the public modules at the top (`app`, `tasks`, `job`, `locks`, `aio`, over\n"
        "`errors`, `config`, `serializers`, `periodic`), `redisq/backend/` the Redis seam\n"
        f"({mods('backend')}; `keys.py` is the key schema, `lua/` one script per atomic step; the one\n"
        "step that is a MULTI/EXEC transaction instead, `delay()` of a new job, is in `records.py`),\n"
        f"`redisq/broker/` queues and channels ({mods('broker')}), `redisq/worker/` the daemons\n"
        f"({mods('worker')}), `redisq/ops/` the operator side ({mods('ops')});\n"
        "`webapp/` the Flask front end (`tasks.py` holds the demo tasks), `worker.py` a thin shim for\n"
        "`redisq worker`, `systemd/` the units and the generated `redisq.env.example`, `docs/` the\n"
        "guide, `tests/` (`unit`, `integration`, `fault`, `web`, `ops`: units, ACL, health probe;\n"
        "`docs`: every example runs), `scripts/system-deps.sh` the Debian packages the tests need,\n"
        "`scripts/gen_docs.py` the generated references, `scripts/relayout.py` the move into layers,\n"
        "`scripts/import_graph.py` the import depth and cycles."
    )
    return textwrap.fill(" ".join(text.split()), width=100, break_long_words=False,
                         break_on_hyphens=False)


def rewrite_readme(text: str) -> str:
    m = re.search(r"^## Layout\n\n(.*?)(?=\n\n|\n##|\n?\Z)", text, flags=re.S | re.M)
    if not m:
        die("README.md has no '## Layout' section")
    assert m
    return text[: m.start(1)] + layout_paragraph() + text[m.end(1):]


# ---- Main -----------------------------------------------------------------------------------
def move_files() -> dict[Path, Path]:
    """git mv every module of the table; returns old -> new path of every Python file."""
    tracked = [Path(p) for p in git("ls-files").split()]
    renames = {p: moved_path(p) for p in tracked if p.suffix == ".py" and moved_path(p) != p}
    # redisq/worker.py must leave before the package redisq/worker/ can exist.
    for old in list(renames):
        if old.with_suffix("").name in LAYERS and old.parent == Path("redisq"):
            tmp = old.with_name(f"_relayout_{old.name}")
            git("mv", str(old), str(tmp))
            renames[tmp] = renames.pop(old)
    for layer in LAYERS:
        (PKG / layer).mkdir(exist_ok=True)
    for old, new in renames.items():
        git("mv", str(old), str(new))
    for src, dst in DIR_MOVES.items():
        git("mv", f"redisq/{src}", f"redisq/{dst}")
    for layer, doc in LAYERS.items():
        init = PKG / layer / "__init__.py"
        init.write_text(f'"""{doc}"""\n', "utf-8")
        git("add", str(init))
    return {k if not k.name.startswith("_relayout_") else k.with_name(k.name[len("_relayout_"):]): v
            for k, v in renames.items()}


def main() -> None:
    check_tree()
    originals = {Path(p) for p in git("ls-files").split() if p.endswith(".py")}
    renames = move_files()
    touched: list[Path] = []
    for old in sorted(originals - SKIP):
        new = renames.get(old, old)
        path = ROOT / new
        text = path.read_text("utf-8")
        result = rewrite_python(text, module_of(old), module_of(new))
        if result != text:
            path.write_text(result, "utf-8")
            touched.append(new)
    for pattern in TEXT_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and path.suffix != ".py":
                text = path.read_text("utf-8")
                result = rewrite_text(text)
                if path.name == "README.md" and path.parent == ROOT:
                    result = rewrite_readme(result)
                if result != text:
                    path.write_text(result, "utf-8")
    for rel, edits in EDITS.items():
        path = ROOT / rel
        text = path.read_text("utf-8")
        for old_text, new_text in edits:
            if text.count(old_text) != 1:
                die(f"{rel}: expected once: {old_text!r}")
            text = text.replace(old_text, new_text)
        path.write_text(text, "utf-8")
    # Sort the rewritten imports the way `make test`'s ruff wants them (isort rules only).
    ruff = Path(sys.executable).with_name("ruff")
    if touched:
        subprocess.run([str(ruff), "check", "--select", "I", "--fix", "--quiet",
                        *map(str, touched)], cwd=ROOT, check=False)
    print(f"relayout: moved {len(renames)} modules and {len(DIR_MOVES)} directories, "
          f"rewrote imports in {len(touched)} files; review with `git status` and commit")


if __name__ == "__main__":
    main()
