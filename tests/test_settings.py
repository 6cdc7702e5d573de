"""Every setting the code reads from the environment is documented in the README (Datasette's
habit: settings declared once, and a test that keeps the docs honest)."""
from __future__ import annotations

import re
from pathlib import Path

from manuscripts_search.config import SETTINGS, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("manuscripts_search", "harvest", "web")


def _env_names_in_code() -> set[str]:
    names = set()
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            names |= set(re.findall(r"\bMSEARCH_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    # Flask config keys that only happen to share the prefix are not environment variables.
    return {n for n in names if n not in {"MSEARCH_CONFIG"}}


def test_every_environment_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(MSEARCH_[A-Z0-9_]+)`", readme))
    missing = sorted((_env_names_in_code() | {s.name for s in SETTINGS}) - documented)
    assert not missing, f"settings read by the code but not documented in README.md: {missing}"


def test_core_settings_are_declared_once():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.help for s in SETTINGS)


def test_bad_values_are_refused_with_the_setting_named(tmp_path):
    for name, value in (("MSEARCH_IMAGE_SIZE", "big"), ("MSEARCH_IMAGE_SIZE", "3"),
                        ("MSEARCH_HTTP_TIMEOUT", "soon")):
        try:
            load_config({"MSEARCH_DATA_DIR": str(tmp_path), name: value})
        except ConfigError as exc:
            assert name in str(exc)
        else:
            raise AssertionError(f"{name}={value!r} was accepted")
