"""A small headless-Chromium harness for the book's browser tests, built on selenium.

It drives Debian's `chromium` + `chromium-driver` (apt-get install chromium chromium-driver); it never
downloads a browser or a driver. Reuse it wherever a test needs a real browser:

    from harness import browser

    with browser("_build/html") as b:            # serves the folder on 127.0.0.1
        b.open_page("03_attention.html")
        b.click("details.hide summary")          # clicks work like a reader's
        assert b.console_errors() == []          # severe console messages since the last call
        b.screenshot("_build/screenshots/03.png")

`browser()` with no folder opens absolute URLs instead (a JupyterLab or dashboard server you started).
`unavailable_reason()` says, in one line, why no browser can run here (None when one can).
Environment overrides: CHROMIUM=/path/to/chromium, CHROMEDRIVER=/path/to/chromedriver.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)
DRIVER_PATHS = ("/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers often give /dev/shm only 64 MB, and Chromium's renderer then crashes.
    "--disable-dev-shm-usage",
    # Pages must not depend on the network: every host but this machine fails at once, so a test
    # gives the same answer online and offline, and a CDN script cannot stall a page load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
# Not page errors: a failed fetch from another host (MathJax from a CDN: the harness blocks the
# network), and the favicon that Chromium asks every server for by itself.
EXTERNAL_FAILURE = re.compile(
    r"^((https?:)?//(?!127\.0\.0\.1[:/]|localhost[:/])\S+|\S+/favicon\.ico) - Failed to load resource")


class BrowserUnavailable(RuntimeError):
    """No Chromium, no chromedriver, or no selenium on this machine."""


def find_executables() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or BrowserUnavailable saying what is missing."""
    chromium = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER") or next(filter(None, map(shutil.which, DRIVER_NAMES)), None)
    driver = driver or next((p for p in DRIVER_PATHS if os.access(p, os.X_OK)), None)
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver))
               if not (path and os.access(path, os.X_OK))]
    if missing:
        raise BrowserUnavailable(
            f"{' and '.join(missing)} not found; install with "
            "`apt-get install -y chromium chromium-driver` (or set CHROMIUM / CHROMEDRIVER)")
    return chromium, driver


def unavailable_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; run `make book-test` (it installs requirements-dev.txt)"
    try:
        find_executables()
    except BrowserUnavailable as error:
        return str(error)
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: str | Path) -> Iterator[str]:
    """Serve a folder on 127.0.0.1 (a free port) in a thread; yields the base URL, ending in '/'."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Browser:
    """One headless Chromium window. `driver` is the selenium WebDriver for anything not wrapped here."""

    def __init__(self, driver, base_url: str | None, timeout: float) -> None:
        self.driver = driver
        self.base_url = base_url
        self.timeout = timeout

    def url(self, path: str) -> str:
        if re.match(r"^[a-z]+://", path) or self.base_url is None:
            return path
        return self.base_url + path.lstrip("/")

    def open_page(self, path: str) -> None:
        """Load a page (relative to the served folder, or an absolute URL) and wait until it is ready:
        the document has loaded, and every image has finished loading or failed."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(self.url(path))
        wait = WebDriverWait(self.driver, self.timeout)
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        self.js("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; });")
        wait.until(lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete);"))

    def js(self, script: str, *args: Any) -> Any:
        """Run JavaScript in the page; `return x` hands x back (lists, dicts, strings, numbers)."""
        return self.driver.execute_script(script, *args)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Scroll the first element matching `css` into view and click it as a reader would."""
        element = self.find(css)
        self.js("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    def visible(self, css: str) -> bool:
        """Whether the first element matching `css` is rendered (not inside a closed <details>)."""
        return bool(self.js("const e = document.querySelector(arguments[0]);"
                            "return !!e && e.checkVisibility();", css))

    def text(self, css: str = "body") -> str:
        """The rendered text of the first match: what a reader sees, folded parts left out."""
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)

    def console(self) -> list[dict]:
        """Console messages since the last call: dicts with 'level' and 'message'."""
        return self.driver.get_log("browser")

    def console_errors(self, *, external: bool = False) -> list[str]:
        """SEVERE console messages since the last call. Failed fetches from other hosts (the harness
        blocks the network on purpose) and of /favicon.ico are left out unless external=True."""
        return [entry["message"] for entry in self.console() if entry["level"] == "SEVERE"
                and (external or not EXTERNAL_FAILURE.match(entry["message"]))]

    def screenshot(self, path: str | Path) -> Path:
        """Save what the window shows as a PNG (the folder is created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


@contextmanager
def browser(site: str | Path | None = None, *, width: int = 1280, height: int = 1000,
            timeout: float = 30.0) -> Iterator[Browser]:
    """A fresh headless Chromium (own temporary profile), serving `site` on 127.0.0.1 if given.

    Raises BrowserUnavailable (with a one-line reason) when Chromium, chromedriver or selenium is missing.
    """
    reason = unavailable_reason()
    if reason:
        raise BrowserUnavailable(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = find_executables()
    with tempfile.TemporaryDirectory(prefix="gpt2scratch-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=chromedriver, log_output=subprocess.DEVNULL)
        with serve(site) if site is not None else _nothing() as base_url:
            driver = webdriver.Chrome(options=options, service=service)
            try:
                driver.set_page_load_timeout(timeout)
                yield Browser(driver, base_url, timeout)
            finally:
                driver.quit()


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
