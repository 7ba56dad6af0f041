"""A real headless browser for the gallery tests and its screenshot: Debian's ``chromium`` driven by
``chromedriver`` through selenium (the ``dev`` extra; ``.ci/run`` installs the browser when it is missing)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

INSTALL_HINT = (
    "the gallery tests need a real headless browser: install Debian's chromium and its driver with "
    "`apt-get install -y chromium chromium-driver` (.ci/run does this) and selenium with `pip install -e '.[dev]'`"
)


def missing_browser() -> str | None:
    """Why no browser can be started here (with :data:`INSTALL_HINT`), or ``None`` when it can."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return f"{', '.join(missing)} not found: {INSTALL_HINT}" if missing else None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A headless chromium ``selenium`` WebDriver with a ``width`` × ``height`` window, closed on exit;
    ``RuntimeError`` with the install hint when the browser, its driver or selenium is missing."""
    problem = missing_browser()
    if problem:
        raise RuntimeError(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()
