"""The device agent is its own package (agent/, `sightline-agent`): it installs into a fresh
virtualenv without Django and passes its own tests there; it pins what the portal pins; and the
server imports its protocol module: one implementation of the wire format, no copy."""
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

import pytest

import sightline_agent
from sightline_agent import protocol

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"
INSTALL_TIMEOUT_SECONDS = 240  # downloads av, Pillow, websockets, pytest the first time; pip's cache after


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_the_agent_package_pins_the_versions_the_portal_pins():
    project = tomllib.loads((AGENT / "pyproject.toml").read_text())["project"]
    portal = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-agent.txt") | pins(ROOT / "requirements-dev.txt")
    declared = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    for requirement in declared:
        name, version = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", requirement).groups()
        if name.lower() in portal:
            assert portal[name.lower()] == version, f"agent/pyproject.toml pins {name}=={version}"
    assert {"websockets", "av", "pillow"} <= {re.match(r"[\w.-]+", d).group(0).lower() for d in project["dependencies"]}
    assert project["optional-dependencies"]["onvif"] == [f"{n}=={v}" for n, v in pins(ROOT / "requirements-agent.txt").items()]
    assert not any("django" in d.lower() for d in declared)
    assert project["scripts"] == {"sightline-agent": "sightline_agent.cli:main"}
    assert "-e ./agent" in (ROOT / "requirements.txt").read_text().splitlines()


def test_the_server_imports_the_agents_protocol_module_and_keeps_no_copy():
    from streams.consumers import device
    from recordings import spool

    assert device.Close is protocol.Close and spool.HEADER is protocol.HEADER
    assert not (ROOT / "streams" / "protocol.py").exists() and not list(ROOT.glob("streams/agent/*.py"))
    stale = re.compile(r"\bstreams\.(protocol|tokens|audioformats|agent)\b|from[ ]streams[ ]import .*\b(protocol|tokens|audioformats)\b")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for top in ("accounts", "bench", "project", "recordings", "streams",
                                                             "tests", "frontend", "scripts", "agent")
                 for path in (ROOT / top).rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if stale.search(line)]
    assert offenders == []


@pytest.mark.slow
def test_the_agent_installs_into_a_fresh_virtualenv_without_django_and_passes_its_own_tests(tmp_path):
    # A copy, so the build leaves nothing in the checkout; its sightline_agent/ is removed after the
    # install, so the tests can only import the installed package.
    source = tmp_path / "agent"
    shutil.copytree(AGENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}

    def run(*args, timeout=120):
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    started = time.monotonic()
    run(str(python), "-m", "pip", "install", "--quiet", f"{source}[test]", timeout=INSTALL_TIMEOUT_SECONDS)
    installed = time.monotonic()
    shutil.rmtree(source / "sightline_agent")

    no_django = subprocess.run([str(python), "-c", "import django"], cwd=tmp_path, env=env, capture_output=True)
    assert no_django.returncode != 0, "Django is importable in the agent's virtualenv"
    assert run(str(bin_dir / "sightline-agent"), "--version").strip() == f"sightline-agent/{sightline_agent.__version__}"
    where = run(str(python), "-c", "import sightline_agent; print(sightline_agent.__file__)").strip()
    assert Path(where).is_relative_to(env_dir)
    output = run(str(bin_dir / "pytest"), "-q", str(source / "tests"), timeout=300)
    assert re.search(r"\d+ passed", output) and "failed" not in output
    print(f"agent package: install {installed - started:.1f} s, own tests {time.monotonic() - installed:.1f} s")
