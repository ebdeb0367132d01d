"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no websocket,
no selenium, no port. Commands go to the browser's fd 3 and answers come from its fd 4, each one JSON
message ending in a NUL byte.

`load(url)` opens a page and returns what a test needs to judge it: every request the page made, every
console message, exception and browser log entry, the DOM as the page shows it, and a full-page screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


def chromium() -> str | None:
    """The browser to test with: Debian's chromium (what `make test` installs), else one on PATH."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's /dev/shm can be too small for the renderer
    "--disable-extensions",
    "--mute-audio",
    # nothing leaves the machine even if something tried: every host resolves to nothing, every proxy
    # connection goes to a closed local port
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--remote-debugging-pipe",
]


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)  # URLs the page asked for, in order
    failed: list[str] = field(default_factory=list)  # requests that failed, with the reason
    console: list[dict[str, Any]] = field(default_factory=list)  # {"level", "text"}: console, exceptions, log
    dom: dict[str, Any] = field(default_factory=dict)  # what the page's own DOM says (see PROBE)
    screenshot: bytes = b""  # PNG of the whole page

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.console if m["level"] in ("error", "assert", "exception")]


# Run in the page after load: its sections, headings, plots and anything that must not be there.
PROBE = """(() => {
  const sections = [...document.querySelectorAll('section')].map(s => ({
    id: s.id,
    h2: (s.querySelector('h2') || {}).textContent || null,
    svgs: [...s.querySelectorAll('svg')].map(v => {
      const r = v.getBoundingClientRect();
      return {w: r.width, h: r.height, paths: v.querySelectorAll('path').length};
    }),
    tables: s.querySelectorAll('table').length,
    text: s.innerText.slice(0, 4000),
  }));
  return {
    title: document.title,
    readyState: document.readyState,
    sections,
    scripts: document.querySelectorAll('script').length,
    externalRefs: [...document.querySelectorAll('[src],[href],link,img,iframe,object,embed')]
      .map(e => e.getAttribute('src') || e.getAttribute('href') || e.tagName)
      .filter(u => !String(u).startsWith('#')),
    height: document.documentElement.scrollHeight,
    html: document.documentElement.outerHTML,
  };
})()"""


class Chromium:
    def __init__(self, binary: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()  # we write commands, the browser reads fd 3
        self._out_r, out_w = os.pipe()  # the browser writes fd 4, we read

        def child_fds() -> None:  # in the child, before exec: the two pipe ends as fd 3 and 4
            # through copies above 10 first: a pipe end may itself be fd 3 or 4, and dup2 onto the same
            # number would leave it close-on-exec
            ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, out_w)]
            for target, fd in zip((3, 4), ends, strict=True):
                os.dup2(fd, target)  # inheritable

        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            preexec_fn=child_fds,
            close_fds=False,  # fd 3 and 4 must survive exec; everything else Python opens is non-inheritable
        )
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer; its stderr:\n{self.stderr_text()[-3000:]}")
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise ConnectionError(f"chromium closed the pipe; its stderr:\n{self.stderr_text()[-3000:]}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            got = self._read_message(deadline)
            if got.get("id") == self._next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.events.append(got)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def drain(self, quiet: float = 0.5) -> None:
        """Take events until none came for `quiet` seconds (late requests, late console messages)."""
        while True:
            try:
                self.events.append(self._read_message(time.monotonic() + quiet))
            except TimeoutError:
                return

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._out_r)
        self.stderr.close()


def load(url: str, binary: str, width: int = 1280) -> PageLoad:
    """Open `url` in a fresh headless Chromium (its own throwaway profile) and report what happened."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = Chromium(binary, Path(profile))
        try:
            return _load(browser, url, width)
        finally:
            browser.close()


def _load(browser: Chromium, url: str, width: int) -> PageLoad:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    browser.events.clear()  # about:blank's own events
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_event("Page.loadEventFired")
    browser.drain()
    page = PageLoad()
    for ev in browser.events:
        if ev.get("sessionId") != session:
            continue
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            page.failed.append(f"{params.get('type')}: {params.get('errorText')}")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            page.console.append({"level": params["type"], "text": text})
        elif method == "Runtime.exceptionThrown":
            page.console.append({"level": "exception", "text": json.dumps(params["exceptionDetails"])[:2000]})
        elif method == "Log.entryAdded":
            entry = params["entry"]
            page.console.append({"level": entry["level"], "text": f"{entry.get('url', '')}: {entry['text']}"})
    got = browser.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)
    page.dom = got["result"]["value"]
    shot = browser.send(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": _clip(page.dom["height"], width)},
        session=session,
        timeout=60,
    )
    page.screenshot = base64.b64decode(shot["data"])
    return page


def _clip(height: int, width: int) -> dict[str, Any]:
    return {"x": 0, "y": 0, "width": width, "height": min(height, 16000), "scale": 1}
