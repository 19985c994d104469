"""CI cannot lose its browser tests without a sign: with CI=true a missing Chromium fails the run.

`.ci/need-chromium` (called by .ci/run) runs here with a PATH holding only a stub apt-get, so no real
package is installed; tests/test_browser.py runs in a child pytest pointed at a browser that does
not exist ($CHROMIUM).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devkit import browser

ROOT = Path(__file__).resolve().parents[1]
NEED = ROOT / ".ci" / "need-chromium"


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def need_chromium(tmp_path: Path, ci: str | None, apt_installs: bool) -> subprocess.CompletedProcess:
    """Run .ci/need-chromium on a PATH with no browser and an apt-get that fails, or 'installs' one."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    if apt_installs:
        # "apt-get install" puts a chromium on PATH; "apt-get update" just succeeds.
        stub(bin_, "apt-get", f'case "$*" in *install*) printf "#!/bin/sh\\n" > {bin_}/chromium; '
                              f'/bin/chmod +x {bin_}/chromium;; esac; exit 0')
    else:
        stub(bin_, "apt-get", 'echo "E: Unable to locate package chromium" >&2; exit 100')
    stub(bin_, "tr", 'exec /usr/bin/tr "$@"')
    env = {"PATH": str(bin_)} | ({"CI": ci} if ci is not None else {})
    return subprocess.run(["/bin/bash", str(NEED)], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("ci", ["true", "1", "True"])
def test_ci_fails_when_chromium_cannot_be_installed(tmp_path, ci):
    r = need_chromium(tmp_path, ci, apt_installs=False)
    assert r.returncode == 1
    assert "error: could not install chromium" in r.stderr and "test_browser.py" in r.stderr


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_outside_ci_a_missing_chromium_is_a_warning(tmp_path, ci):
    r = need_chromium(tmp_path, ci, apt_installs=False)
    assert r.returncode == 0
    assert "warning: could not install chromium; tests/test_browser.py will be skipped" in r.stderr


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_chromium_that_installs_passes(tmp_path, ci):
    r = need_chromium(tmp_path, ci, apt_installs=True)
    assert r.returncode == 0 and r.stderr == ""
    assert (tmp_path / "bin" / "chromium").exists()


def test_ci_run_checks_for_chromium_before_the_tests():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ".ci/need-chromium" in lines  # a plain line: with set -e its failure ends the run
    assert lines.index(".ci/need-chromium") < next(i for i, line in enumerate(lines) if "pytest" in line)
    assert "set -euo pipefail" in lines
    assert os.access(NEED, os.X_OK)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("1", pytest.fail.Exception),
                                         ("TRUE", pytest.fail.Exception), ("", pytest.skip.Exception),
                                         ("false", pytest.skip.Exception), ("0", pytest.skip.Exception)])
def test_need_chromium_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    monkeypatch.setenv("CI", ci)
    # Both outcomes are caught, so that a skip where a failure is due fails this test instead of skipping it.
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception), match="Chromium is not installed") as e:
        browser.need_chromium()
    assert type(e.value) is outcome


def test_chromium_env_names_the_browser(monkeypatch, tmp_path):
    fake = tmp_path / "chrome"
    fake.write_text("")
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert browser.find_chromium() == str(fake) == browser.need_chromium()


def test_browser_tests_fail_in_ci_without_chromium(tmp_path):
    # The real test file in a child pytest (~5 s: it imports the app): with CI=true every test errors,
    # before any server starts. Outside CI the same fixture skips (test_need_chromium_... above).
    env = {**os.environ, "CI": "true", "CHROMIUM": str(tmp_path / "no-such-browser")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_browser.py")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert "error" in last and "passed" not in last and "skipped" not in last, last
    assert "Chromium is not installed" in r.stdout and "CI must run the browser tests" in r.stdout
