"""Packaging: every import is declared, the built wheel and sdist carry what they must, the version prints.

The import check reads the source with ``ast`` (no module is imported) and maps each third-party
top-level module to the distributions that provide it (``importlib.metadata.packages_distributions``).
The package may use ``install_requires``; ``recgym/integrations`` also the ``ray`` extra; the tests
also the ``dev`` and ``ray`` extras (the Ray tests skip without it); ``benchmarks`` the package's own.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import recgym

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"


def normalize(name: str) -> str:
    """PEP 503 form of a distribution name: ``Stable_Baselines3`` -> ``stable-baselines3``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(setup_cfg: str) -> dict[str, set[str]]:
    """Normalised distribution names declared in ``install_requires`` and in each extra."""
    config = configparser.ConfigParser()
    config.read_string(setup_cfg)

    def names(block: str) -> set[str]:
        return {normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.strip())[0])
                for line in block.splitlines() if line.strip()}

    groups = {"install_requires": names(config["options"]["install_requires"])}
    groups.update({extra: names(block) for extra, block in config["options.extras_require"].items()})
    return groups


def third_party_imports(paths: list[Path], first_party: set[str]) -> dict[str, list[str]]:
    """Top-level module -> files importing it, for absolute imports of neither stdlib nor ``first_party``."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in first_party:
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def undeclared_imports(setup_cfg: str) -> list[str]:
    """One line per third-party import that no requirement allowed where it is imported provides."""
    groups = declared(setup_cfg)
    core = groups["install_requires"]
    test_modules = {path.stem for path in (ROOT / "tests").glob("*.py")}
    package = sorted((ROOT / "recgym").rglob("*.py"))
    integrations = [path for path in package if "integrations" in path.relative_to(ROOT / "recgym").parts]
    checks = [
        ([path for path in package if path not in integrations], core),
        (integrations, core | groups["ray"]),
        (sorted((ROOT / "tests").glob("*.py")), core | groups["dev"] | groups["ray"]),
        (sorted((ROOT / "benchmarks").glob("*.py")), core),
    ]
    providers = importlib.metadata.packages_distributions()
    problems = []
    for paths, allowed in checks:
        for module, files in sorted(third_party_imports(paths, {"recgym", *test_modules}).items()):
            distributions = {normalize(name) for name in providers.get(module, [module])}
            if not distributions & allowed:
                problems.append(f"{module} (distribution {', '.join(sorted(distributions))}) imported by "
                                f"{', '.join(sorted(set(files)))} is not declared in setup.cfg")
    return problems


def test_every_third_party_import_is_declared():
    assert undeclared_imports(SETUP_CFG.read_text()) == []


def test_an_undeclared_import_is_reported():
    """The check is not vacuous: without its scipy line, setup.cfg no longer covers ``from scipy import``."""
    without_scipy = re.sub(r"(?m)^\s*scipy\b.*\n", "", SETUP_CFG.read_text())
    problems = undeclared_imports(without_scipy)
    assert any(problem.startswith("scipy ") and "recgym/metrics.py" in problem for problem in problems), problems
    assert any(problem.startswith("scipy ") and "tests/test_experiments.py" in problem for problem in problems)


def test_supersuit_is_a_test_dependency_only():
    groups = declared(SETUP_CFG.read_text())
    assert "supersuit" not in groups["install_requires"] and "supersuit" in groups["dev"]
    assert "supersuit" not in third_party_imports(sorted((ROOT / "recgym").rglob("*.py")), {"recgym"})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[set[str], set[str]]:
    """(wheel member names, sdist member names without the top folder). ``python -m build`` makes the
    sdist, then the wheel FROM that sdist, so the wheel also proves the sdist is complete."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
    with tarfile.open(sdist) as archive:
        sdist_names = {name.partition("/")[2] for name in archive.getnames()}
    return wheel_names, sdist_names


def package_data_files() -> list[str]:
    """Source files matched by setup.cfg's ``[options.package_data]`` patterns, as wheel paths."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    files = []
    for package, patterns in config["options.package_data"].items():
        folder = ROOT / package.replace(".", "/")
        for pattern in filter(None, (item.strip() for item in re.split(r"[,\n]", patterns))):
            matches = [path for path in folder.glob(pattern) if path.is_file()]
            assert matches, f"package_data pattern {pattern!r} matches no file in {folder}"
            files += [str(path.relative_to(ROOT)) for path in matches]
    return files


def test_wheel_carries_licence_type_marker_and_package_data(built):
    wheel, _ = built
    licences = {name for name in wheel if re.fullmatch(r"recgym-[^/]+\.dist-info/(licenses/)?LICENSE", name)}
    assert licences, sorted(name for name in wheel if ".dist-info/" in name)
    assert "recgym/py.typed" in wheel
    assert "recgym/data/kuairand_pure_items.csv" in wheel
    missing = [name for name in package_data_files() if name not in wheel]
    assert missing == []
    modules = [str(path.relative_to(ROOT)) for path in (ROOT / "recgym").rglob("*.py")]
    assert [name for name in modules if name not in wheel] == []
    assert not any(name.startswith("tests/") for name in wheel)


def test_sdist_carries_the_tests_with_their_conftest(built):
    _, sdist = built
    assert {"LICENSE", "MANIFEST.in", "setup.cfg", "tests/conftest.py"} <= sdist
    needed = [str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("*.py")]
    assert len(needed) > 10
    assert [name for name in needed if name not in sdist] == []
    assert not any("__pycache__" in name for name in sdist)


@pytest.mark.parametrize("command", [[sys.executable, "-m", "recgym"], [str(Path(sys.executable).parent / "recgym")]],
                         ids=["python -m recgym", "recgym"])
def test_version_flag_prints_the_version(command):
    run = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"recgym {recgym.__version__}\n", "")


def test_docs_and_docstrings_point_inside_the_repository():
    """A user's clone has only this repository: every ``../path`` in the docs, the package, the
    benchmarks and the configs resolves (from the file's folder) to a file or folder of the repository."""
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "recgym").rglob("*.py"),
             *(ROOT / "recgym").rglob("*.md"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "experiments").glob("*")]
    outside = []
    for path in texts:
        for target in re.findall(r"(?:\.\./)+[\w./-]*\w", path.read_text()):
            resolved = (path.parent / target).resolve()
            if not (resolved.is_relative_to(ROOT) and resolved.exists()):
                outside.append(f"{path.relative_to(ROOT)}: {target}")
    assert outside == []
