"""The environment files agree: requirements.txt and environment.yml pin the same packages at the same
versions, pyproject.toml names every package the code imports, and a job finds optbench without it
being installed in the job's environment (what `--sdm conda` relies on)."""
import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, TINY

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name → conda-forge name where they differ
MODULE_DISTRIBUTIONS = {"yaml": "pyyaml"}  # import name → distribution name where they differ


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                name, version = pip_dep.split("==")
                pins[name.lower()] = version
        elif "=" in dep:
            name, version = dep.split("=", 1)
            pins[name.lower()] = version
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def imported_packages() -> dict[str, str]:
    """Third-party top-level modules imported by the library, the job scripts and the workflow → a file
    that imports each."""
    sources = [*(ROOT / "optbench").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    found = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "optbench":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_pip_pin_is_in_environment_yml_at_the_same_version():
    conda = conda_pins()
    for name, version in pip_pins().items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"{name} pinned in requirements.txt but missing from environment.yml"
        assert conda[conda_name] == version, f"{name}: requirements {version} vs environment.yml {conda[conda_name]}"


def test_environment_yml_has_nothing_requirements_lacks():
    pip_names = {CONDA_NAMES.get(n, n) for n in pip_pins()}
    extra = set(conda_pins()) - pip_names - {"python"}
    assert not extra, f"environment.yml pins {extra}, which requirements.txt does not"


def test_torch_pair_is_the_one_that_imports_here():
    pins = pip_pins()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")


def test_pyproject_names_every_package_the_code_imports():
    imports = imported_packages()
    assert {"torch", "scipy", "torchvision", "mnist1d"} <= set(imports)  # the scan sees lazy imports too
    declared = {normalise(d) for d in pyproject()["dependencies"]}
    wanted = {normalise(MODULE_DISTRIBUTIONS.get(module, module)): where for module, where in imports.items()}
    missing = {name: where for name, where in wanted.items() if name not in declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_every_pyproject_dependency_is_pinned_in_requirements():
    project = pyproject()
    named = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    pins = {normalise(n) for n in pip_pins()}
    assert sorted(normalise(d) for d in named if normalise(d) not in pins) == []


def test_the_license_file_is_packaged():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert pyproject()["license"] == "MIT" and pyproject()["license-files"] == ["LICENSE"]


@pytest.mark.workflow
def test_a_job_imports_optbench_from_the_workflow_without_an_install(tmp_path):
    """`--sdm conda` runs each script in the conda environment's Python, where optbench is not installed
    (environment.yml cannot install it: see its comment). The script still imports it: Snakemake puts
    the Snakefile's folder, this repository, on its own sys.path and appends that sys.path to every
    script's in the script's preamble. Rerun a generated script under `python -I -S`: no site-packages
    of its own, so no installed or editable optbench; what it imports comes through that preamble
    (removing the repository from the preamble makes the script fail with ModuleNotFoundError)."""
    # without PYTHONPATH, which would hand the repository to the preamble by itself
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", str(TINY),
                    "--directory", str(tmp_path), "--cores", "1", "--skip-script-cleanup", "--until",
                    "prepare_data"], env=env, check=True, capture_output=True, timeout=300)
    script, = (tmp_path / ".snakemake" / "scripts").glob("*.prepare_data.py")
    data, = (tmp_path / "results" / "data").glob("*.pt")
    data.unlink()
    isolated = subprocess.run([sys.executable, "-I", "-S", str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
    log, = (tmp_path / "logs" / "prepare_data").glob("*.log")
    assert isolated.returncode == 0, isolated.stderr[-3000:] + log.read_text()[-3000:]
    assert data.is_file()
    # and the optbench it used is this repository's, not an installed copy
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", script.read_text().split("import pickle")[0]
                            + "import optbench; print(optbench.__file__)"], capture_output=True, text=True)
    assert probe.stdout.strip() == str(ROOT / "optbench" / "__init__.py"), probe.stderr
