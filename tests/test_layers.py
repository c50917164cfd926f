"""The dependency order of ``timebank/``, checked from the imports: the web layer above the
domain above the base; no package imports one that imports it back; no domain module
imports litestar; domain errors carry no HTTP status."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import timebank
from timebank import errors

ROOT = Path(timebank.__file__).parent

# Top to bottom: a unit may import only units below it (the base modules are one unit).
LAYERS = [
    "__main__",
    "cli",  # the command line
    "app",  # the application factory
    "models",  # every table, for Alembic and the tests
    "console",  # web: the console's pages (beside the API's controllers, above them)
    "api",  # web: controllers
    "web",  # web: problems, idempotent writes, pagination, middleware, server
    "tools",  # demo generator, backups
    "imports",  # paper time sheets: read, resolve, preview, commit (through the batch)
    "lifecycle",  # registration, erasure: spanning parties, ledger, auth, audit
    "evidence",  # the hash chain, checkpoints, proofs and the verifier, over ledger and reports
    "reports",
    "ledger",
    "auth",
    "members",
    "organisations",
    "events",  # the event feed and webhooks: written by every use case above
    "timebanks",
    "audit",
    "base",  # access, config, db, errors, idempotency, logs, types, ...
]
WEB = {"app", "cli", "console", "api", "web"}


def unit(module: str) -> str:
    """``timebank.ledger.record`` → ``ledger``; a top-level module of the base → ``base``."""
    parts = module.split(".")
    if len(parts) < 2:
        return "base"
    name = parts[1]
    if name in LAYERS:
        return name
    if (ROOT / name).is_dir():
        raise AssertionError(f"package timebank.{name} has no place in LAYERS")
    return "base"


def imports() -> dict[str, set[tuple[str, str]]]:
    """module → {(imported module, line)} for every ``timebank`` and ``litestar`` import."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "timebank":
                    names = [f"timebank.{a.name}" for a in node.names]
            for name in names:
                if name.startswith(("timebank.", "litestar")):
                    out[module].add((name, f"{path.name}:{node.lineno}"))
    return out


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for module, targets in imports().items():
        here = LAYERS.index(unit(module))
        for target, where in targets:
            if not target.startswith("timebank."):
                continue
            there = LAYERS.index(unit(target))
            if there < here:
                wrong.append(f"{module} ({where}) imports {target}: up the layers")
    assert wrong == []


def test_no_package_imports_one_that_imports_it_back() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        for target, _ in targets:
            if target.startswith("timebank.") and unit(target) != unit(module):
                edges[unit(module)].add(unit(target))
    cycles = sorted((a, b) for a in edges for b in edges[a] if a in edges.get(b, set()))
    assert cycles == []


def test_no_domain_or_base_module_imports_litestar() -> None:
    offenders = sorted(
        f"{module} ({where})"
        for module, targets in imports().items()
        if unit(module) not in WEB
        for target, where in targets
        if target.startswith("litestar")
    )
    assert offenders == []


def test_domain_errors_carry_a_code_and_no_http_status() -> None:
    from timebank.web.problems import STATUS

    found = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.DomainError)
    ]
    assert len(found) > 10
    for cls in found:
        assert not hasattr(cls, "status"), cls
        if cls is not errors.DomainError:
            assert cls.code in STATUS, f"{cls.__name__}: code {cls.code!r} has no status"
