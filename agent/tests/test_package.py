"""The agent package itself: its version is one number (package metadata, --version, the hello's
"agent" string), and it imports nothing of the portal, so it installs without Django."""
import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import sightline_agent

PACKAGE_DIR = Path(sightline_agent.__file__).parent
# What a module of the agent may import: the standard library, the agent itself, its dependencies
# (pyproject.toml), and the ONVIF extra's libraries (onvif, zeep, wsdiscovery: imported lazily, by onvif_camera.py/discover.py).
ALLOWED = set(sys.stdlib_module_names) | {"sightline_agent", "websockets", "av", "PIL", "onvif", "zeep", "wsdiscovery"}


def test_the_version_is_in_the_hello_agent_string_and_in_the_package_metadata():
    assert sightline_agent.AGENT_NAME == f"sightline-agent/{sightline_agent.__version__}"
    try:
        installed = metadata.version("sightline-agent")
    except metadata.PackageNotFoundError:
        pytest.skip("sightline-agent is importable but not installed (PYTHONPATH): no metadata to compare")
    assert installed == sightline_agent.__version__


def test_version_prints_the_agent_name_and_exits_zero(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sightline_agent", "--version"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sightline_agent.AGENT_NAME


def test_no_module_of_the_agent_imports_django_or_the_portal():
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED, f"{path.name}:{node.lineno} imports {name}"
