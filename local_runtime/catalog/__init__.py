"""The model catalog: built-in families (config/catalog/*.yaml) and custom registrations.

schema.py says what a family is, store.py loads and registers them, xinference.py reads
Xinference's custom-model JSON, offline.py says which entries can launch without a download.
"""

from __future__ import annotations

from local_runtime.catalog.schema import (
    ABILITIES,
    FORMATS,
    CatalogError,
    Family,
    ModelSpec,
    PypiSource,
    parse_family,
    parse_size,
)
from local_runtime.catalog.store import (
    BUILTIN_CATALOG_DIR,
    Catalog,
    load_custom_dir,
    load_yaml_dir,
)
from local_runtime.catalog.xinference import family_from_xinference

__all__ = [
    "ABILITIES",
    "BUILTIN_CATALOG_DIR",
    "FORMATS",
    "Catalog",
    "CatalogError",
    "Family",
    "ModelSpec",
    "PypiSource",
    "family_from_xinference",
    "load_custom_dir",
    "load_yaml_dir",
    "parse_family",
    "parse_size",
]
