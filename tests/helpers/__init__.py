"""Shared test helpers: servers, model builders, catalogues and fixtures that several test modules
use. Test modules import from here (or get fixtures by name), never from each other.

Fixture modules, loaded by conftest.py's ``pytest_plugins``: database (db_url, msearch_env,
module_db_url), postgres, model_fixtures (tiny models and their encoders), iiif_server_fixtures,
image_servers (IIPImage, a static level-0 tree, the iiif reference server), ray_cluster,
shapes_collection (the end-to-end collection over HTTP) and web_site (the book of shapes). conftest
itself adds site, app, client, make_app and runner.

Plain helpers: browser, cli (run_cli), corpus (the shared corpus and its expected counts), crops,
dead_hosts (image hosts that never answer or refuse),
iiif_server, images, model_factory, scripted_server, search_library, worker_catalogue.
"""
