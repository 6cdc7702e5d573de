"""The shape of the code (docs/architecture.md): stage packages, no import cycles (lazy imports
included), settings only through config.py, a domain that imports neither harvest nor web."""
from __future__ import annotations

import ast
from pathlib import Path

from manuscripts_search.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports(module: str, path: Path, is_package: bool) -> set[str]:
    """Every module ``module`` imports, at the top or inside functions."""
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            targets.add(name)
            targets.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return targets


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_lazy_imports_included():
    for package in ("manuscripts_search", "web", "harvest"):
        modules = _modules(package)
        # A module's own parent packages are imported before it anyway: not a design cycle.
        edges = {name: {t for t in _imports(name, *where) if t in modules and not (name + ".").startswith(t + ".")}
                 for name, where in modules.items()}
        assert _cycles(edges) == [], package


def test_the_domain_imports_neither_harvest_nor_web_outside_the_cli():
    for name, where in _modules("manuscripts_search").items():
        if name == "manuscripts_search.cli" or name.startswith("manuscripts_search.commands"):
            continue
        outside = {t for t in _imports(name, *where) if t.split(".")[0] in ("harvest", "web")}
        assert not outside, (name, outside)


def test_stage_packages_and_a_small_top_level():
    top = [p.name for p in (ROOT / "manuscripts_search").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 12, sorted(top)
    for stage in ("iiif", "store", "embedding", "index", "search", "commands", "distributed"):
        assert (ROOT / "manuscripts_search" / stage / "__init__.py").is_file(), stage


def test_the_environment_is_read_only_in_config():
    readers = []
    for package in ("manuscripts_search", "web", "harvest"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "manuscripts_search" / "config.py":
                continue
            text = path.read_text(encoding="utf-8")
            if "os.environ" in text or "getenv(" in text:
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []


def test_web_server_settings_come_through_config():
    config = load_config({"MSEARCH_ADMIN_TOKEN": "  s3cret  ", "MSEARCH_LOG_FORMAT": "text",
                          "MSEARCH_LOG_LEVEL": "DEBUG", "MSEARCH_SEARCH_RATE_LIMIT": "5/second",
                          "MSEARCH_SEARCH_RATE_BURST": "3", "MSEARCH_TRUSTED_PROXIES": "1"})
    assert (config.admin_token, config.log_format, config.log_level) == ("s3cret", "text", "DEBUG")
    assert (config.search_rate_limit, config.search_rate_burst, config.trusted_proxies) == ("5/second", "3", "1")
    assert "s3cret" not in repr(config)  # a secret is never printed with the configuration
    unset = load_config({})
    assert (unset.admin_token, unset.search_rate_limit) == (None, None)  # the app's own defaults apply


def test_test_modules_import_helpers_not_each_other():
    modules = _modules("tests")
    offenders = {module: sorted(target for target in _imports(module, path, is_package)
                                if target.startswith("tests.test_"))
                 for module, (path, is_package) in modules.items()}
    assert {module: targets for module, targets in offenders.items() if targets} == {}
