"""One local Ray for the whole test session (starting Ray takes seconds on two cores).

A pytest plugin (listed in conftest.py's ``pytest_plugins``): the first test that asks for
``ray_cluster`` starts Ray, later ones find it running, and Ray is stopped at the end of the
session if this fixture started it.
"""
from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """The ``ray`` module, initialised with 2 logical CPUs and no dashboard."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()
