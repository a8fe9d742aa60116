"""The Dockerfile and scripts/bootstrap.sh install the same thing: the same extras, from the same lock.

docker cannot run on the development machines nor in CI, so the image is never built here; these
checks read the files instead. Each check is a function of a source tree, run on the repository
and, in `test_a_disagreement_is_caught`, on copies edited to disagree, so that none of them can
pass whatever the files say.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from local_runtime.engines import registry
from local_runtime.spec import TYPE_ALIASES

ROOT = Path(__file__).resolve().parent.parent
# What the checks read, relative to a source tree.
FILES = (
    "scripts/bootstrap.sh",
    "scripts/lock.sh",
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "requirements/constraints.txt",
    "requirements/starter-nodeps.txt",
    "docker-compose.yml",
    "examples/fastgpt/README.md",
    "examples/fastgpt/docker-compose.fastgpt-4.8.23.yml",
    "examples/fastgpt/docker-compose.gpu.yml",
)
# What the image's build stages COPY from the context (the wheel build follows the packages'
# symlinks into config/).
IMAGE_NEEDS = (
    "pyproject.toml",
    "README.md",
    "gateway",
    "local_runtime",
    "admin_ui",
    "modelport_wire",
    "config",
    "requirements",
)


# ---------------------------------------------------------------- reading the files


@dataclass
class PipInstall:
    """One `pip install` invocation: its options and what it installs."""

    text: str
    constraints: list[str]
    editable: bool
    no_deps: bool
    requirement_files: list[str]
    targets: list[str]


def parse_pip_install(command: str) -> PipInstall:
    words = shlex.split(command)
    words = words[words.index("install") + 1 :]
    constraints: list[str] = []
    files: list[str] = []
    targets: list[str] = []
    editable = no_deps = False
    takes_value = {"--index-url", "--extra-index-url", "-f", "--find-links"}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-c", "--constraint"):
            constraints.append(words[i + 1])
            i += 1
        elif word.startswith("--constraint="):
            constraints.append(word.split("=", 1)[1])
        elif word in ("-r", "--requirement"):
            files.append(words[i + 1])
            i += 1
        elif word in ("-e", "--editable"):
            editable = True
            targets.append(words[i + 1])
            i += 1
        elif word == "--no-deps":
            no_deps = True
        elif word in takes_value:
            i += 1
        elif not word.startswith("-"):
            targets.append(word)
        i += 1
    return PipInstall(command, constraints, editable, no_deps, files, targets)


def _pip_installs(commands: list[str]) -> list[PipInstall]:
    found = []
    for command in commands:
        for part in re.split(r"&&|\|\||;", command):
            if re.search(r"\bpip\"?\s+install\b", part, re.I):
                found.append(parse_pip_install(part.strip()))
    return found


@dataclass
class Bootstrap:
    serve_extras: list[str]
    constraints: str
    installs: list[PipInstall]  # with "$CONSTRAINTS" already substituted


def read_bootstrap(root: Path) -> Bootstrap:
    text = (root / "scripts/bootstrap.sh").read_text(encoding="utf-8")
    extras = re.search(r'^SERVE_EXTRAS="([^"]*)"\s*$', text, re.M)
    assert extras, "scripts/bootstrap.sh sets no SERVE_EXTRAS"
    constraints = re.search(r"^CONSTRAINTS=(\S+)\s*$", text, re.M)
    assert constraints, "scripts/bootstrap.sh sets no CONSTRAINTS"
    path = constraints.group(1).strip("\"'")
    lines = [
        line.replace("$CONSTRAINTS", path).replace("${CONSTRAINTS}", path)
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
    ]
    return Bootstrap(_split(extras.group(1)), path, _pip_installs(lines))


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARG defaults, the last one of each name
    runs: list[str]  # RUN instructions, continuation lines joined
    copies: list[list[str]]  # COPY arguments (flags dropped)
    workdir: str  # the final stage's WORKDIR
    installs: list[PipInstall]

    def copied(self) -> set[str]:
        """The build-context paths that COPY takes (sources of COPY --from are stages' paths)."""
        return {Path(src).as_posix().rstrip("/") for args in self.copies for src in args[:-1]}


def read_dockerfile(root: Path) -> Dockerfile:
    text = (root / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    args: dict[str, str] = {}
    runs: list[str] = []
    copies: list[list[str]] = []
    workdir = "/"
    for line in joined.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.strip().partition("=")
            args[name] = default.strip("\"'")
        elif keyword == "RUN":
            runs.append(re.sub(r"^(--\S+\s+)+", "", rest.strip()))
        elif keyword == "COPY":
            copies.append([w for w in rest.split() if not w.startswith("--")])
        elif keyword == "WORKDIR":
            workdir = rest.strip()
    return Dockerfile(args, runs, copies, workdir, _pip_installs(runs))


def _split(extras: str) -> list[str]:
    return [e.strip() for e in extras.split(",") if e.strip()]


def lock_pins(root: Path) -> dict[str, str]:
    pins = {}
    for line in (root / "requirements/constraints.txt").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def pyproject_extras(root: Path) -> dict[str, list[str]]:
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]["optional-dependencies"]


def walkthrough_engines(root: Path) -> list[tuple[str, str | None]]:
    """(engine, model type) of every `modelport launch` in the FastGPT walkthrough."""
    found = []
    for doc in sorted((root / "examples/fastgpt").glob("*.md")):
        for line in doc.read_text(encoding="utf-8").splitlines():
            if "modelport launch" not in line:
                continue
            words = shlex.split(line.split("modelport launch", 1)[1], comments=True)
            opts = dict(zip(words, [*words[1:], None], strict=True))
            engine = opts.get("-e") or opts.get("--engine")
            mtype = opts.get("-t") or opts.get("--model-type")
            if engine:
                found.append((engine, TYPE_ALIASES.get(mtype, mtype) if mtype else None))
    return found


def compose_build_args(root: Path) -> list[tuple[str, dict[str, str]]]:
    found = []
    for path in [root / "docker-compose.yml", *sorted((root / "examples/fastgpt").glob("*.yml"))]:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, service in (doc.get("services") or {}).items():
            build = service.get("build")
            args = build.get("args") if isinstance(build, dict) else None
            if isinstance(args, list):
                args = dict(a.split("=", 1) for a in args)
            if args:
                found.append((f"{path.name}:{name}", {k: str(v) for k, v in args.items()}))
    return found


# ---------------------------------------------------------------- the checks


def check_same_extras(root: Path) -> None:
    boot, docker = read_bootstrap(root), read_dockerfile(root)
    assert "EXTRAS" in docker.args, "the Dockerfile has no ARG EXTRAS default"
    image = _split(docker.args["EXTRAS"])
    assert len(image) == len(set(image)), f"ARG EXTRAS names an extra twice: {image}"
    assert set(image) == set(boot.serve_extras), (
        f"Dockerfile EXTRAS {sorted(image)} != bootstrap SERVE_EXTRAS {sorted(boot.serve_extras)}"
    )
    # ... and the install line uses it
    modelport = [i for i in docker.installs if any("${EXTRAS}" in t for t in i.targets)]
    assert modelport, "no pip install line in the Dockerfile installs [${EXTRAS}]"


def check_extras_exist(root: Path) -> None:
    declared = pyproject_extras(root)
    image = _split(read_dockerfile(root).args["EXTRAS"])
    named = set(read_bootstrap(root).serve_extras) | set(image)
    missing = sorted(named - set(declared))
    assert not missing, f"extras not in pyproject's optional-dependencies: {missing}"


def check_same_lock(root: Path) -> None:
    boot, docker = read_bootstrap(root), read_dockerfile(root)
    assert (root / boot.constraints).is_file(), f"bootstrap's lock {boot.constraints} is missing"
    assert docker.installs, "the Dockerfile has no pip install line"
    for install in docker.installs:
        assert install.constraints, f"Dockerfile pip line without -c: {install.text}"
        for c in install.constraints:
            resolved = Path(c) if c.startswith("/") else Path(docker.workdir) / c
            expected = Path(docker.workdir) / boot.constraints
            assert resolved == expected, (
                f"Dockerfile installs with -c {c}, bootstrap with {boot.constraints}"
            )
    # bootstrap itself: every line that resolves dependencies goes through the lock
    tooling = {"pip", "setuptools", "wheel"}  # the new venv's own installer
    resolving = [i for i in boot.installs if not i.no_deps and not set(i.targets) <= tooling]
    assert resolving, "scripts/bootstrap.sh has no pip install line"
    for install in resolving:
        assert install.constraints == [boot.constraints], (
            f"bootstrap pip line not constrained by {boot.constraints}: {install.text}"
        )
    # the image has the lock where the -c paths point
    copied = docker.copied()
    lock_dir = Path(boot.constraints).parts[0]
    assert lock_dir in copied, f"the Dockerfile does not COPY {lock_dir}/"


def check_torch_pin(root: Path) -> None:
    lock = lock_pins(root).get("torch")
    assert lock, "the lock pins no torch"
    docker = read_dockerfile(root)
    assert docker.args.get("TORCH_VERSION") == lock, (
        f"Dockerfile ARG TORCH_VERSION={docker.args.get('TORCH_VERSION')}, the lock has {lock}"
    )
    torch_lines = [i for i in docker.installs if any(t.startswith("torch") for t in i.targets)]
    assert torch_lines, "the Dockerfile installs no torch explicitly (a CUDA build would come)"
    for install in torch_lines:
        assert "torch==${TORCH_VERSION}" in install.targets, install.text
        assert install.constraints, install.text
    boot_pins = {
        t.split("==", 1)[1] for i in read_bootstrap(root).installs for t in i.targets
        if t.startswith("torch==")
    }  # fmt: skip
    assert boot_pins == {lock}, f"bootstrap pins torch {boot_pins}, the lock {lock}"


def check_python_version(root: Path) -> None:
    lock_py = re.search(r"--python-version\s+(\d+\.\d+)", (root / "scripts/lock.sh").read_text())
    assert lock_py, "scripts/lock.sh names no --python-version"
    image = read_dockerfile(root).args.get("PYTHON_IMAGE", "")
    m = re.match(r"python:(\d+\.\d+)", image)
    assert m and m.group(1) == lock_py.group(1), (
        f"PYTHON_IMAGE {image!r} is not the lock's Python {lock_py.group(1)}"
    )


def check_non_editable_with_starter_weights(root: Path) -> None:
    docker, boot = read_dockerfile(root), read_bootstrap(root)
    editable = [i.text for i in docker.installs if i.editable]
    assert not editable, f"the image installs modelport editable: {editable}"
    boot_nodeps = {f for i in boot.installs if i.no_deps for f in i.requirement_files}
    image_nodeps = {f for i in docker.installs if i.no_deps for f in i.requirement_files}
    assert boot_nodeps, "bootstrap installs no --no-deps requirements file"
    assert boot_nodeps == image_nodeps, (
        f"--no-deps requirement files: bootstrap {boot_nodeps}, Dockerfile {image_nodeps}"
    )


def check_dockerignore_keeps_what_the_image_needs(root: Path) -> None:
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for needed in IMAGE_NEEDS:
        excluded = False
        for pattern in patterns:  # later lines win, `!` re-includes
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").strip("/")
            if fnmatch(needed, pattern) or fnmatch(needed, pattern.removeprefix("**/")):
                excluded = not negate
        assert not excluded, f".dockerignore leaves {needed} out of the build context"
    copied = read_dockerfile(root).copied()
    assert set(IMAGE_NEEDS) - {"README.md"} <= copied, (
        f"the Dockerfile does not COPY {sorted(set(IMAGE_NEEDS) - {'README.md'} - copied)}"
    )


def check_walkthrough_engines_in_image(root: Path) -> None:
    image = set(_split(read_dockerfile(root).args["EXTRAS"]))
    engines = walkthrough_engines(root)
    assert engines, "the FastGPT walkthrough launches no model with -e"
    for engine, mtype in engines:
        extra = registry.get(engine, mtype).extra()
        assert extra in image, (
            f"the walkthrough launches `-e {engine}`, whose extra {extra!r} is not in the image's "
            f"EXTRAS {sorted(image)}"
        )


def check_compose_builds_the_same_image(root: Path) -> None:
    docker = read_dockerfile(root)
    lock = lock_pins(root).get("torch")
    for where, args in compose_build_args(root):
        if "EXTRAS" in args:
            assert set(_split(args["EXTRAS"])) == set(_split(docker.args["EXTRAS"])), (
                f"{where} builds the image with other EXTRAS: {args['EXTRAS']}"
            )
        if "TORCH_VERSION" in args:
            assert args["TORCH_VERSION"] == lock, f"{where}: TORCH_VERSION is not the lock's"


CHECKS: dict[str, Callable[[Path], None]] = {
    f.__name__.removeprefix("check_"): f
    for f in (
        check_same_extras,
        check_extras_exist,
        check_same_lock,
        check_torch_pin,
        check_python_version,
        check_non_editable_with_starter_weights,
        check_dockerignore_keeps_what_the_image_needs,
        check_walkthrough_engines_in_image,
        check_compose_builds_the_same_image,
    )
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_install_files_agree(name):
    CHECKS[name](ROOT)


# ---------------------------------------------------------------- the checks catch disagreements

SERVE = "providers,embeddings,llama-cpp,transformers,whisper,image,starter"
# (check, file, regex, replacement): each edit makes the copy disagree in one way.
EDITS = [
    ("same_extras", "Dockerfile", r"^ARG EXTRAS=.*$", "ARG EXTRAS=starter,embeddings,whisper"),
    ("same_extras", "scripts/bootstrap.sh", r'^SERVE_EXTRAS=".*"$', 'SERVE_EXTRAS="starter"'),
    ("same_extras", "Dockerfile", r"\[\$\{EXTRAS\}\]", "[starter]"),
    ("extras_exist", "Dockerfile", r"^ARG EXTRAS=.*$", f"ARG EXTRAS={SERVE},gpu"),
    ("extras_exist", "pyproject.toml", r"^whisper = ", "whisperx = "),
    ("same_lock", "Dockerfile", r"-c requirements/constraints\.txt --no-deps -r", "--no-deps -r"),
    ("same_lock", "Dockerfile", r"requirements/constraints\.txt", "requirements/other.txt"),
    ("same_lock", "scripts/bootstrap.sh", r'-c "\$CONSTRAINTS" -e', "-e"),
    ("same_lock", "scripts/bootstrap.sh", r"^CONSTRAINTS=.*$", "CONSTRAINTS=requirements/x.txt"),
    ("same_lock", "Dockerfile", r"^COPY requirements .*$", ""),
    ("torch_pin", "Dockerfile", r"^ARG TORCH_VERSION=.*$", "ARG TORCH_VERSION=2.12.0"),
    ("torch_pin", "requirements/constraints.txt", r"^torch==.*$", "torch==2.99.0"),
    ("torch_pin", "scripts/bootstrap.sh", r"torch==[0-9.]+", "torch==2.12.0"),
    ("torch_pin", "Dockerfile", r'"torch==\$\{TORCH_VERSION\}"', "torch"),
    ("python_version", "Dockerfile", r"python:3\.11-slim", "python:3.12-slim"),
    ("non_editable_with_starter_weights", "Dockerfile", r'"\$\{whl\}\[', '-e "/src['),
    ("non_editable_with_starter_weights", "Dockerfile", r"-r requirements/starter-nodeps.txt", "x"),
    ("dockerignore_keeps_what_the_image_needs", ".dockerignore", r"^tests$", "tests\nconfig"),
    ("dockerignore_keeps_what_the_image_needs", ".dockerignore", r"^tests$", "requirements/"),
    ("dockerignore_keeps_what_the_image_needs", "Dockerfile", r"^COPY config .*$", ""),
    ("walkthrough_engines_in_image", "Dockerfile", r"^ARG EXTRAS=.*$", "ARG EXTRAS=embeddings"),
    ("walkthrough_engines_in_image", "examples/fastgpt/README.md", r"-e llama\.cpp", "-e vllm"),
    ("compose_builds_the_same_image", "examples/fastgpt/docker-compose.gpu.yml",
     r"^(\s+)TORCH_INDEX_URL: .*$", r"\g<0>\n\1EXTRAS: starter,embeddings"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("check", "file", "pattern", "replacement"),
    EDITS,
    ids=[f"{c}:{f}:{i}" for i, (c, f, *_) in enumerate(EDITS)],
)
def test_a_disagreement_is_caught(tmp_path, check, file, pattern, replacement):
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    CHECKS[check](tmp_path)  # the copy agrees before the edit
    target = tmp_path / file
    edited, count = re.subn(pattern, replacement, target.read_text(encoding="utf-8"), flags=re.M)
    assert count, f"the edit {pattern!r} matched nothing in {file}"
    target.write_text(edited, encoding="utf-8")
    with pytest.raises(AssertionError):
        CHECKS[check](tmp_path)


def test_every_module_level_import_is_a_declared_dependency():
    """What the packages import at module level (so at server start) is installed by
    pyproject's own dependencies, not by a test tool that happens to drag it in. Imports inside
    functions and `try` blocks are optional engine or provider code, guarded where they are used.
    What a library needs indirectly (greenlet for SQLAlchemy's asyncio) only a real fresh install
    shows: scripts/fresh_install_check.sh, which CI runs first."""
    import ast
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower().replace("_", "-") for r in meta["dependencies"]}
    providers = packages_distributions()
    ours = {"gateway", "local_runtime", "admin_ui", "modelport_wire"}
    missing: dict[str, set[str]] = {}
    for pkg in ours:
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:  # module level only
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else []
                )
                for name in names:
                    top = name.split(".")[0]
                    if not top or top in ours or top in sys.stdlib_module_names:
                        continue
                    dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                    if not dists & declared:
                        missing.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    assert not missing, f"imported at module level but not declared in pyproject: {missing}"
