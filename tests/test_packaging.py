"""The layout must never shadow the standard library and must collect from the repo root; a non-editable
install (a wheel) carries what radloop reads at run time: the shipped configs and the rules.

The README's set-up installs radloop editable, where ``configs/`` sits next to ``core/`` in the checkout; a wheel
installed elsewhere (a GPU box, a cluster image) has only what the wheel holds.  ``--config configs/ssl/...``
falls back to the shipped configs there too (``core.config.shipped_configs``: ``radloop/configs`` beside
``radloop/core``).
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SOURCES = ("core", "labeling", "ssl", "retrieval", "app", "configs")


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


EXTRA_CONFIGS = ("site.yaml", "site.yml", "rounds/wards/er.yaml", "ssl/local.yml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    setuptools = pytest.importorskip("setuptools", reason="building a wheel without build isolation needs setuptools")
    if int(setuptools.__version__.split(".")[0]) < 69:  # pyproject's build-system requirement
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build's setuptools>=69")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    for extra in EXTRA_CONFIGS:  # where a site may add configs: top level, deeper folders, the .yml spelling
        (source / "configs" / extra).parent.mkdir(parents=True, exist_ok=True)
        (source / "configs" / extra).write_text("name: extra\n")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("radloop-*.whl")
    return built


def test_the_wheel_holds_every_shipped_config_and_rule_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(path.relative_to(REPO_ROOT / "configs").as_posix() for path in (REPO_ROOT / "configs").rglob("*.yaml"))
    assert configs, "no configs in the checkout"
    missing = [name for name in configs if f"radloop/configs/{name}" not in names]
    assert not missing, f"configs missing from the wheel: {missing}"
    extras = [name for name in EXTRA_CONFIGS if f"radloop/configs/{name}" not in names]
    assert not extras, f"added configs missing from the wheel: {extras}"
    rules = REPO_ROOT / "labeling" / "rules"
    rule_files = [path.relative_to(rules).as_posix() for path in rules.rglob("*")
                  if path.is_file() and path.suffix in {".json", ".yaml", ".yml", ".tsv"}]
    assert rule_files
    assert not [name for name in rule_files if f"radloop/labeling/rules/{name}" not in names]
    assert "radloop/ssl/__init__.py" in names and not any(name.startswith("ssl/") for name in names)


def test_a_wheel_install_finds_the_shipped_configs_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import radloop.core.config as c\n"
        "assert c.__file__.startswith(sys.argv[1]), c.__file__\n"
        "from radloop.ssl.settings import PretrainConfig\n"
        "print(c.find_config(__import__('pathlib').Path('configs/ssl/simclr_cpu.yaml')))\n"
        "print(c.load_config('configs/ssl/simclr_resnet18_224_gpu.yaml', PretrainConfig).name)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, str(site)], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found, name = result.stdout.split()
    assert Path(found) == site / "radloop" / "configs" / "ssl" / "simclr_cpu.yaml"
    assert name == "simclr_resnet18_224_gpu"
