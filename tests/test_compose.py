"""docker-compose.yml, its example overrides and the Dockerfile wire modelport and FastGPT together.

With a working `docker compose` the files are rendered by it (`docker compose config`); without
one (no compose plugin here) they are read as YAML and interpolated the way compose does
(`${VAR:-default}`, `$$`). The same checks run on either rendering.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
