"""
The live status page, C{/status.json}, C{kamal-proxy status} and
C{--log-format text} against a real daemon (C{--status-port}) and real
backends; the page is loaded in headless Chromium (Debian's C{chromium}
and C{chromium-driver}, driven by Selenium), which must show a target
turning unhealthy within 2 s of its health check failing, with no console
errors.

Set C{KAMAL_PROXY_STATUS_SCREENSHOT=docs/status-page.png} to keep the
page's screenshot (the README's picture); by default it goes to a temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    Daemon,
    bounded,
    deployArgs,
    fetch,
    freePort,
    kamalProxy,
    parseTime,
    startBackend,
    startDaemon,
    tempDir,
)

PAGE_TIMEOUT = 15.0
UNHEALTHY_WITHIN = 2.0


def _browserPaths() -> tuple[str, str]:
    """
    Chromium and its driver, or skip (no test downloads a browser).
    """
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise SkipTest("selenium is not installed (pip install -e '.[test]')") from None
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise SkipTest("Debian's chromium and chromium-driver are not installed")
    return browser, driver


def _startBrowser(browser: str, driverPath: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,820", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driverPath), options=options)


async def _deploy(daemon: Daemon, service: str, host: str, *targets: str) -> None:
    args = deployArgs(service, targets[0], f"--host={host}", *(f"--target={t}" for t in targets[1:]))
    result = await kamalProxy(*args, "--socket", daemon.socket)
    assert result.code == 0, result


class StatusPageTests(TestCase):
    timeout = 120

    async def _daemon(self, *extra: str) -> tuple[Daemon, int]:
        statusPort = freePort()
        daemon = await startDaemon(self, extraArgs=["--status-port", str(statusPort), *extra])
        return daemon, statusPort

    async def test_pageShowsServicesAndAnUnhealthyTargetLive(self) -> None:
        """
        The page lists both services with their targets; when a backend
        starts failing its health check the page shows its target
        unhealthy within 2 s of the daemon noticing, and the browser logs
        no console error.
        """
        browser, driverPath = _browserPaths()
        web1, web2, api = startBackend(self, "web-1"), startBackend(self, "web-2"), startBackend(self, "api-1")
        daemon, statusPort = await self._daemon()
        await _deploy(daemon, "web", "web.example.com", web1.address, web2.address)
        await _deploy(daemon, "api", "api.example.com", api.address)
        for i in range(24):
            await fetch(daemon.url(f"/items/{i}"), host="web.example.com")
        for i in range(8):
            await fetch(daemon.url(f"/v1/{i}"), host="api.example.com")
        await fetch(daemon.url("/nowhere"), host="api.example.com")

        driver = await deferToThread(_startBrowser, browser, driverPath)
        self.addCleanup(lambda: deferToThread(driver.quit))
        page = f"http://127.0.0.1:{statusPort}/status"

        def loaded() -> list[str]:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            driver.get(page)
            wait = WebDriverWait(driver, PAGE_TIMEOUT)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.service")) == 2)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-target="{api.address}"][data-health="healthy"]'))
            return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "article.service h2 .name")]

        titles = await bounded(deferToThread(loaded), PAGE_TIMEOUT + 5, "the status page")
        self.assertEqual(titles, ["api", "web"])

        def seenUnhealthy() -> float:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.05).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-target="{api.address}"][data-health="unhealthy"]')
            )
            return time.time()

        shown: Deferred = deferToThread(seenUnhealthy)
        api.healthStatus = 503
        noticed = json.loads(await daemon.waitForMessage(f"{api.address} is unhealthy", 10.0))
        seenAt = await bounded(shown, PAGE_TIMEOUT + 5, "the page to show the unhealthy target")
        failedAt = parseTime(noticed["time"])
        self.assertLessEqual(seenAt - failedAt, UNHEALTHY_WITHIN)

        def finish() -> tuple[list[dict[str, Any]], str]:
            from selenium.webdriver.common.by import By

            text = driver.find_element(By.ID, "summary").text
            shot = os.environ.get("KAMAL_PROXY_STATUS_SCREENSHOT") or os.path.join(tempDir(self), "status.png")
            driver.save_screenshot(shot)
            return driver.get_log("browser"), text

        logs, summary = await bounded(deferToThread(finish), PAGE_TIMEOUT, "the screenshot")
        self.assertEqual([e for e in logs if e.get("level") == "SEVERE"], [])
        self.assertEqual(summary, "2 services · 1 unhealthy target")

    async def test_statusJSONAndCommandLine(self) -> None:
        """
        C{/status.json} has the documented schema and is read-only;
        C{kamal-proxy status} prints the same facts.
        """
        web = startBackend(self, "web-1")
        daemon, statusPort = await self._daemon()
        await _deploy(daemon, "web", "web.example.com", web.address)
        for i in range(5):
            await fetch(daemon.url(f"/x/{i}"), host="web.example.com")
        status, headers, body = await fetch(f"http://127.0.0.1:{statusPort}/status.json")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        report = json.loads(body)
        [service] = report["services"]
        self.assertEqual(service["name"], "web")
        self.assertEqual(service["state"], "running")
        self.assertEqual(service["targets"], [{"address": web.address, "health": "healthy"}])
        self.assertEqual(service["stats"]["requests"], 5)
        self.assertEqual(report["deploys"][0]["service"], "web")
        self.assertEqual(report["deploys"][0]["outcome"], "succeeded")
        posted, headers, _ = await fetch(f"http://127.0.0.1:{statusPort}/status.json", "POST", data=b"x")
        self.assertEqual(posted, 405)
        result = await kamalProxy("status", "--socket", daemon.socket)
        self.assertEqual(result.code, 0, result)
        lines = result.out.splitlines()
        self.assertEqual(lines[0].split(), ["Service", "Host", "State", "Targets", "Req/s", "p50", "p99", "Errors", "Cache"])
        self.assertEqual(lines[1].split()[:5], ["web", "web.example.com", "running", web.address, "healthy"])
        asJSON = await kamalProxy("status", "--json", "--socket", daemon.socket)
        self.assertEqual(json.loads(asJSON.out)["services"][0]["stats"]["requests"], 5)

    async def test_textLogFormat(self) -> None:
        """
        C{--log-format text} logs a short line per request, with the
        cache's verdict.
        """
        web = startBackend(self, "web-1")
        daemon = await startDaemon(self, extraArgs=["--log-format", "text"])
        await _deploy(daemon, "web", "web.example.com", web.address)
        await fetch(daemon.url("/hello"), host="web.example.com")
        line = await daemon.output.waitForLine(lambda line: " GET web.example.com/hello " in line, 10.0, "the text line")
        fields = line.split()
        self.assertEqual(fields[1:4], ["GET", "web.example.com/hello", "200"])
        self.assertTrue(fields[4].endswith("ms"))
        self.assertEqual(fields[5:], ["web", web.address, "cache=miss"])
