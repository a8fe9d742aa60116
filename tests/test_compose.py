"""docker-compose.yml, its example overrides and the Dockerfile wire modelport and FastGPT together.

With a working `docker compose` the files are rendered by it (`docker compose config`); without
one (no compose plugin here) they are read as YAML and interpolated the way compose does
(`${VAR:-default}`, `$$`). The same checks run on either rendering.

Either way every file, and every rendering, is validated against the Compose Specification's JSON
schema (tests/data/compose-spec.json, the one `docker compose config` validates with): docker
cannot run on the development machines or in CI, so this is the check that `docker compose` would
accept the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDES = sorted((ROOT / "examples" / "fastgpt").glob("docker-compose.*.yml"))
MODELPORT_ENV = {
    "MODELPORT_HOME",
    "MODELPORT_DATABASE_URL",
    "MODELPORT_REDIS_URL",
    "MODELPORT_ADMIN_TOKEN",
    "MODELPORT_INITIAL_TOKEN",
    "MODELPORT_SECRET_KEY",
}
SPEC = ROOT / "tests" / "data" / "compose-spec.json"
SPEC_SHA256 = "73ca5878c77570ba222a558016c7b3c6770ba5f3377786593e32180666512f8f"  # see SOURCE.md
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, for the forms these files use."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current
        if op in (":?", "?") and not current:
            raise ValueError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(sub, value)


def compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return cmd
    return None


def _outside_env() -> dict[str, str]:
    """This process's environment without the variables the compose file reads."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODELPORT_", "FASTGPT_"))}


def render(files: list[Path], env: dict[str, str]) -> dict[str, Any]:
    cli = compose_cli()
    if cli is not None:
        args = [x for f in files for x in ("-f", str(f))]
        proc = subprocess.run(
            [*cli, "--project-directory", str(ROOT), *args, "config", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**_outside_env(), **env},
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    merged: dict[str, Any] = {}
    for f in files:
        doc = interpolate(yaml.safe_load(f.read_text(encoding="utf-8")), env)
        for name, service in doc.get("services", {}).items():
            base = merged.setdefault("services", {}).setdefault(name, {})
            _deep_merge(base, service)
        for key in ("volumes", "networks"):
            merged.setdefault(key, {}).update(doc.get(key) or {})
    return merged


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return render([COMPOSE], {})["services"]


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} is not pinned"


def test_fastgpt_reaches_modelport_with_the_initial_token(services):
    fastgpt = environment(services["fastgpt"])
    token = environment(services["modelport"])["MODELPORT_INITIAL_TOKEN"]
    assert token and token.startswith("sk-")
    assert fastgpt["OPENAI_BASE_URL"] == "http://modelport:3000/v1"
    assert fastgpt["CHAT_API_KEY"] == token
    assert fastgpt["AIPROXY_API_ENDPOINT"] == "http://modelport:3000"  # FastGPT adds /v1
    assert fastgpt["AIPROXY_API_TOKEN"] == token
    for key in ("DEFAULT_ROOT_PSW", "TOKEN_KEY", "ROOT_KEY", "FILE_TOKEN_KEY", "SANDBOX_URL"):
        assert fastgpt[key]
    assert "@mongo:27017/" in fastgpt["MONGODB_URI"]
    assert "@pg:5432/" in fastgpt["PG_URL"]


def test_the_token_can_be_chosen_in_the_environment():
    rendered = render([COMPOSE], {"MODELPORT_INITIAL_TOKEN": "sk-chosen"})["services"]
    assert environment(rendered["fastgpt"])["CHAT_API_KEY"] == "sk-chosen"
    assert environment(rendered["modelport"])["MODELPORT_INITIAL_TOKEN"] == "sk-chosen"


def test_fastgpt_mounts_the_generated_config(services):
    mounts = [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}"
        for v in services["fastgpt"]["volumes"]
    ]
    (mount,) = [m for m in mounts if ":/app/data/config.json" in m]
    source = Path(mount.split(":/app/data/config.json")[0])
    source = source if source.is_absolute() else ROOT / source
    assert source.is_file(), f"{source} is not there to mount"
    config = json.loads(source.read_text(encoding="utf-8"))
    assert config["llmModels"] and config["systemEnv"]["oneapiUrl"] == "http://modelport:3000/v1"


def test_modelport_service(services):
    modelport = services["modelport"]
    assert set(environment(modelport)) >= MODELPORT_ENV
    assert environment(modelport)["MODELPORT_HOME"] == "/data"
    assert any(
        str(v).endswith(":/data") or (isinstance(v, dict) and v.get("target") == "/data")
        for v in modelport["volumes"]
    )
    assert "/api/status" in " ".join(modelport["healthcheck"]["test"])
    assert modelport["build"]["context"] in (".", str(ROOT))


def test_healthchecks_and_start_order(services):
    for name in ("modelport", "pg", "mongo", "modelport-postgres", "modelport-redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    deps = depends_on(services["fastgpt"])
    assert deps["modelport"]["condition"] == "service_healthy"
    assert deps["mongo"]["condition"] == "service_healthy"
    assert deps["pg"]["condition"] == "service_healthy"
    assert "sandbox" in deps


def test_mongo_runs_the_replica_set_fastgpt_needs(services):
    mongo = services["mongo"]
    command = mongo["command"] if isinstance(mongo["command"], str) else " ".join(mongo["command"])
    assert "--replSet rs0" in command
    assert "rs.initiate" in " ".join(mongo["entrypoint"])


def test_postgres_and_redis_are_an_opt_in_profile(services):
    for name in ("modelport-postgres", "modelport-redis"):
        assert services[name]["profiles"] == ["scale"]
        dep = depends_on(services["modelport"])[name]
        assert dep["required"] is False and dep["condition"] == "service_healthy"
    env = environment(services["modelport-postgres"])
    assert env["POSTGRES_DB"] == "modelport"


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda p: p.name)
def test_example_overrides_apply_to_the_base_file(override):
    base = render([COMPOSE], {})["services"]
    own = yaml.safe_load(override.read_text(encoding="utf-8"))["services"]
    assert set(own) <= set(base), "an override names a service the base file lacks"
    merged = render([COMPOSE, override], {})["services"]
    for name in own:
        tag = merged[name]["image"].rsplit(":", 1)[-1]
        assert tag and tag != "latest"


def test_newer_fastgpt_override_is_past_the_config_json_era():
    merged = render([COMPOSE, ROOT / "examples/fastgpt/docker-compose.fastgpt-4.8.23.yml"], {})
    image = merged["services"]["fastgpt"]["image"]
    assert image.startswith("ghcr.io/labring/fastgpt:v4.8.2")


def test_dockerfile_is_the_cpu_image_serving_on_all_interfaces():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"torch==\$\{TORCH_VERSION\}", text)
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert "https://download.pytorch.org/whl/cpu" in text
    assert "starter" in re.search(r"^ARG EXTRAS=(.*)$", text, re.M).group(1)
    assert 'CMD ["modelport", "serve", "--host", "0.0.0.0"' in text
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored


def test_interpolation_follows_compose():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$$x", env) == "v/d//d/$x"


# ---------------------------------------------------------------- the Compose Specification


@pytest.fixture(scope="module")
def spec() -> jsonschema.protocols.Validator:
    raw = SPEC.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SPEC_SHA256, (
        "tests/data/compose-spec.json differs from the copy that compose-spec.SOURCE.md describes"
    )
    schema = json.loads(raw)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def spec_errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    """One line per error; for a "not valid under any of the given schemas" the likeliest reason."""
    lines = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        while error.context:  # oneOf/anyOf: the alternative that got furthest
            error = max(error.context, key=lambda e: len(e.absolute_path))
        lines.append(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:300]}")
    return lines


def load_interpolated(path: Path, env: dict[str, str] | None = None) -> Any:
    """One file as compose validates it: parsed, then interpolated."""
    return interpolate(yaml.safe_load(path.read_text(encoding="utf-8")), env or {})


@pytest.mark.parametrize("path", [COMPOSE, *OVERRIDES], ids=lambda p: p.name)
def test_each_file_follows_the_compose_specification(spec, path):
    errors = spec_errors(spec, load_interpolated(path))
    assert not errors, f"{path.name}:\n" + "\n".join(errors)


@pytest.mark.parametrize("overrides", [[], *[[o] for o in OVERRIDES], OVERRIDES], ids=repr)
def test_each_rendering_follows_the_compose_specification(spec, overrides):
    rendered = render([COMPOSE, *overrides], {"MODELPORT_INITIAL_TOKEN": "sk-x"})
    errors = spec_errors(spec, rendered)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("where", "value", "words"),
    [
        (("services", "modelport", "healthcheck", "interval"), 10, "not of type 'string'"),
        (("services", "modelport", "restrt"), "always", "'restrt'"),
        (("services", "fastgpt", "depends_on", "mongo", "condition"), "healthy", "is not one of"),
        # the healthcheck this file once had: unquoted, YAML read its ": " as a mapping
        (("services", "mongo", "healthcheck", "test"), ["CMD-SHELL", {"a ? 0": "1)"}], "type"),
        (("services", "modelport", "ports"), "3001:3000", "not of type 'array'"),
        (("volumes", "modelport-data"), "local", "not of type 'object'"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else None,
)
def test_the_specification_check_catches_mistakes(spec, where, value, words):
    doc = load_interpolated(COMPOSE)
    assert not spec_errors(spec, doc)
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    errors = spec_errors(spec, doc)
    assert errors and any(words in e for e in errors), errors
