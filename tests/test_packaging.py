"""The layout must never shadow the standard library and must collect from the repo root."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_stdlib_ssl_not_shadowed_from_repo_root():
    result = subprocess.run(
        [sys.executable, "-c",
         "import ssl, urllib.request; ssl.create_default_context(); print(ssl.__file__)"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(REPO_ROOT) not in result.stdout, f"repo ssl/ shadows the stdlib: {result.stdout}"


def test_pytest_collects_from_repo_root():
    result = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "tests/test_packaging.py"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_namespace_imports():
    import radloop.app
    import radloop.core
    import radloop.labeling
    import radloop.retrieval
    import radloop.ssl

    assert "ssl/src" in radloop.ssl.__file__.replace("\\", "/")
    assert not (REPO_ROOT / "ssl" / "__init__.py").exists()
