"""What Streamlit Community Cloud installs (Pipfile) stays in step with requirements.txt."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Training/evaluation-only packages the hosted app must not need (tests/test_browser.py checks it never loads them);
# optuna and psycopg2-binary: cifar.tune's study and its PostgreSQL driver.
LEFT_OUT = {"torchvision", "scikit-learn", "optuna", "psycopg2-binary"}


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pipfile_pins_what_requirements_pin_minus_the_training_only_packages():
    pipfile = tomllib.loads((ROOT / "Pipfile").read_text())
    packages = {}
    for name, spec in pipfile["packages"].items():
        version = spec["version"] if isinstance(spec, dict) else spec
        packages[name.lower()] = version.removeprefix("==")
    reqs = requirement_pins()
    assert set(packages) == set(reqs) - LEFT_OUT
    assert {name: packages[name] for name in packages} == {name: reqs[name] for name in packages}


def test_pipfile_takes_torch_from_the_cpu_index():
    pipfile = tomllib.loads((ROOT / "Pipfile").read_text())
    sources = {s["name"]: s["url"] for s in pipfile["source"]}
    assert sources[pipfile["packages"]["torch"]["index"]] == "https://download.pytorch.org/whl/cpu"
    assert "https://pypi.org/simple" in sources.values()
