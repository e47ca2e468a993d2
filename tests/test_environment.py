"""requirements.txt and environment.yml pin the same packages at the same versions."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name → conda-forge name where they differ


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
