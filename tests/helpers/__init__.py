"""Shared test helpers: servers, model builders, catalogues and fixtures that several test modules
use. Test modules import from here (or get fixtures from conftest), never from each other."""
