"""End to end: ``streamlit run app/main.py`` on a small real workspace, driven by headless Chromium.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``make browser`` installs them) and selenium
(the ``test`` extra).  The server is stopped at the end, also when a check fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_workspace import build_app_workspace
from conftest import DATA_ROOT, data_path

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1600"]
#: Page url path ("" = the default page) -> (title, CSS selector of its key element, minimum count).
PAGES = {
    "": ("Overview", '[data-testid="stMetric"]', 5),
    "search": ("Case search", '[data-testid="stImage"] img', 1),
    "reports": ("Report explorer", "mark.radloop-mention", 1),
    "queue": ("Selection queue", '[data-testid="stImage"] img', 3),
    "rounds": ("Round control", '[data-testid="stAlert"]', 1),
    "models": ("Models", '[data-testid="stDataFrame"]', 1),
}
#: Extra checks per page: selector -> minimum count.
EXTRA = {
    "": {'[data-testid="stVegaLiteChart"]': 2, '[data-testid="stDataFrame"]': 3},
    "queue": {'[data-testid="stDataFrame"]': 1},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not installed: `make browser` (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served by ``streamlit run`` on a free port; yields its base URL and stops it afterwards."""
    pytest.importorskip("selenium")
    _chromium()
    data_path("bone_fracture_xray_roboflow_v4", "yolo", "train")
    data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    root = tmp_path_factory.mktemp("browser")
    workspace = build_app_workspace(root / "ws", DATA_ROOT)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key != "RADLOOP_DATABASE_URL"}
    env.update(RADLOOP_WORKSPACE=str(workspace.root), LABEL_STUDIO_URL="http://127.0.0.1:9", HF_HUB_OFFLINE="1",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = (root / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 40
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}: {(root / 'streamlit.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("streamlit did not answer /_stcore/health within 40 s")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", root
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    _, root = server
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS + [f"--user-data-dir={root / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver, selector: str, count: int, timeout: float = 20.0) -> list:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector!r}: {len(found)} < {count} after {timeout:.0f} s")
        time.sleep(0.25)


def _not_blank(path: Path) -> float:
    """Standard deviation of the screenshot's grey levels (a blank page is ~0)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float32).std())


@pytest.mark.parametrize("page", list(PAGES), ids=[page or "overview" for page in PAGES])
def test_page_renders_in_chromium(server, browser, page):
    from selenium.webdriver.common.by import By

    base_url, root = server
    title, selector, count = PAGES[page]
    browser.get(f"{base_url}/{page}")
    heading = _wait_for(browser, "h1", 1)[0]
    deadline = time.monotonic() + 20
    while heading.text.strip() != title and time.monotonic() < deadline:
        time.sleep(0.25)
        heading = browser.find_elements(By.CSS_SELECTOR, "h1")[0]
    assert heading.text.strip() == title
    _wait_for(browser, selector, count, timeout=60 if page == "reports" else 20)  # reports: medspacy loads once
    for extra, minimum in EXTRA.get(page, {}).items():
        _wait_for(browser, extra, minimum)
    _wait_for(browser, '[data-testid="stSidebarNav"] a', len(PAGES))
    body = browser.find_element(By.TAG_NAME, "body").text
    for problem in ("Traceback", "could not be shown", "Page not found"):
        assert problem not in body
    deadline = time.monotonic() + 15  # let the script run finish ("Running..." widget gone)
    while browser.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]') and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(0.5)
    screenshot = root / f"screenshot-{page or 'overview'}.png"
    assert browser.save_screenshot(str(screenshot))
    assert _not_blank(screenshot) > 10.0, f"{screenshot} looks blank"
    if os.environ.get("RADLOOP_SCREENSHOTS"):
        target = Path(os.environ["RADLOOP_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)


def test_sidebar_navigation_switches_pages(server, browser):
    from selenium.webdriver.common.by import By

    base_url, _ = server
    browser.get(base_url)
    _wait_for(browser, '[data-testid="stMetric"]', 5)
    links = {link.text.strip().splitlines()[-1]: link  # the text starts with the icon's ligature name
             for link in _wait_for(browser, '[data-testid="stSidebarNav"] a', len(PAGES))}
    assert list(links) == [title for title, _, _ in PAGES.values()]
    links["Selection queue"].click()
    _wait_for(browser, '[data-testid="stImage"] img', 3)
    assert browser.find_elements(By.CSS_SELECTOR, "h1")[0].text.strip() == "Selection queue"
    assert browser.current_url.rstrip("/").endswith("/queue")


def test_case_search_accepts_a_dicom_file(server, browser):
    """The uploader used to accept only .png/.jpg/.jpeg: a radiologist's DICOM was refused by the browser widget."""
    from selenium.webdriver.common.by import By

    base_url, _ = server
    dicom = data_path("dicom_radiographs", "RG1_J2KR.dcm")
    browser.get(f"{base_url}/search")
    _wait_for(browser, "h1", 1)
    upload = _wait_for(browser, 'input[type="file"]', 1)[0]
    assert not upload.get_attribute("accept")  # any file: DICOMs often have no extension
    upload.send_keys(str(dicom))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = browser.find_element(By.TAG_NAME, "body").text
        if "RG1_J2KR.dcm" in body and "Nearest cases" in body:
            break
        time.sleep(0.25)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Nearest cases" in body, body[-2000:]
    for problem in ("not allowed", "Could not read", "Traceback", "could not be shown"):
        assert problem not in body
