"""Shared fixtures: temporary data dirs and databases, real servers, test-time models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here; tests build their own models
# The product refuses loopback and private addresses by default (SSRF); the test servers all
# listen on 127.0.0.1, so the suite allow-lists exactly that. Tests of the refusal itself pass
# their own NetworkPolicy or environment.
os.environ.setdefault("MSEARCH_ALLOW_HOSTS", "127.0.0.1,localhost")

import pytest  # noqa: E402

# Plain asserts in the helpers (run_cli, assert_each_item_once...) report like a test's own.
pytest.register_assert_rewrite("tests.helpers")

from tests.helpers.database import DATABASE_FIXTURES, used_database  # noqa: E402

# Fixture modules (tests/helpers/): their fixtures are available to every test module by name.
pytest_plugins = [
    "tests.helpers.database",  # db_url, msearch_env, module_db_url, close_idle_connections
    "tests.helpers.postgres",  # postgres_server_url, postgres_url
    "tests.helpers.model_fixtures",  # random_clip_dir, random_siglip_dir, trained_clip_dir, trained_clip_encoder,
    #                                  text_encoder
    "tests.helpers.iiif_server_fixtures",  # iiif_server
    "tests.helpers.image_servers",  # iipsrv_server, static_level0_server, iiif_reference_server
    "tests.helpers.ray_cluster",  # ray_cluster
    "tests.helpers.shapes_collection",  # shapes_collection
    "tests.helpers.web_site",  # shapes_site
]


@pytest.fixture(scope="module")
def site(shapes_site):
    """The catalogue a module's web tests run against: the book of shapes (helpers/web_site.py),
    unless the module defines a module-scoped ``site`` of its own (test_web does: canvases
    published in each way the viewer handles). ``app`` serves it."""
    return shapes_site


@pytest.fixture(scope="module")
def app(site):
    """The web app on ``site``, once per module, as http://msearch.test/. A test that changes
    ``app.config`` puts it back; one that needs other settings or data uses ``make_app``."""
    from web import create_app
    from web.database import dispose_engine

    app = create_app(config=site.config, test_config={"TESTING": True, "SERVER_NAME": "msearch.test"})
    yield app
    dispose_engine(app)


@pytest.fixture
def client(app):
    """Flask's test client of ``app``."""
    return app.test_client()


@pytest.fixture
def make_app():
    """``create_app(config, **settings)`` for one test (TESTING on), its database connections
    closed afterwards."""
    from web import create_app
    from web.database import dispose_engine

    apps = []

    def make(config=None, **settings):
        apps.append(create_app(config=config, test_config={"TESTING": True, **settings}))
        return apps[-1]

    yield make
    for app in apps:
        dispose_engine(app)


@pytest.fixture
def runner():
    """click's CliRunner for the ``msearch`` command group (helpers/cli.py's ``run_cli`` drives it)."""
    from click.testing import CliRunner

    return CliRunner()


def pytest_collection_modifyitems(config, items):
    """Mark every test that touches a database, so the PostgreSQL pass of `make test` can run
    exactly those (`-m db`) while the SQLite pass runs everything."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


_UNMARKED_DATABASE_TESTS: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Note a test that used a database without the ``db`` mark: the PostgreSQL pass would skip
    it. (Connections its fixtures open at setup are not counted.)"""
    with used_database() as used:
        result = yield
    if used and item.get_closest_marker("db") is None and item.get_closest_marker("own_database") is None:
        _UNMARKED_DATABASE_TESTS.append(item.nodeid)
    return result


def pytest_terminal_summary(terminalreporter):
    if _UNMARKED_DATABASE_TESTS:
        terminalreporter.section("tests that used a database without the `db` mark")
        terminalreporter.write_line("The PostgreSQL pass of `make test` (-m db) skips these: request db_url / "
                                    "msearch_env / module_db_url, or mark them @pytest.mark.db (or "
                                    "@pytest.mark.own_database when the database is chosen on purpose).")
        for nodeid in _UNMARKED_DATABASE_TESTS:
            terminalreporter.write_line(f"  {nodeid}")
