"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``):
no WebDriver, no port, nothing beyond the standard library and Debian's ``chromium``.

    with Browser(chromium_path(), profile) as browser:
        page = browser.open("http://127.0.0.1:8000/")   # diagrams, code blocks, errors
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

# What the test asks a page once it has loaded: its diagrams, code blocks and text that a
# Markdown mistake leaves behind. Material draws a diagram into a shadow root; OPEN_SHADOWS
# (run before each page's own scripts) makes those roots readable.
OPEN_SHADOWS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
"""
INSPECT = """(() => {
  const content = document.querySelector(".md-content") || document.body;
  const drawn = [...document.querySelectorAll("div.mermaid")].map(d => d.shadowRoot);
  const blocks = [...content.querySelectorAll("pre > code")];
  const texts = [];  // the text outside code: a raw "* " or ``` there is Markdown left unparsed
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    if (!walker.currentNode.parentElement.closest("pre, code")) texts.push(walker.currentNode.textContent);
  }
  return JSON.stringify({
    waiting: document.querySelectorAll("pre.mermaid").length,
    diagrams: drawn.filter(r => r && r.querySelector("svg")).length,
    diagram_errors: drawn.filter(r => r && /Syntax error|Parse error/i.test(r.textContent)).length,
    code_blocks: blocks.length,
    empty_code_blocks: blocks.filter(c => !c.textContent.trim()).length,
    overflowing_code: blocks.filter(c => c.scrollWidth > c.clientWidth + 1)
      .map(c => c.textContent.split("\\n").reduce((a, b) => a.length >= b.length ? a : b)),
    raw_markdown: texts.filter(t => /\\n[ \\t]*[*+][ \\t]|```|--8<--/.test(t)).map(t => t.slice(0, 80)),
  });
})()"""
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--window-size=1280,900",
]


def chromium_path() -> str | None:
    """Debian's ``chromium`` (or another Chromium on PATH), None without one."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class Browser:
    """One headless Chromium with one tab; ``open(url)`` loads a page and returns what it shows."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_chromium, self._commands = os.pipe()
        self._replies, from_chromium = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: move our ends out of the way
        # first, so that the dup2 calls in the child never overwrite one another.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chromium, from_chromium)]
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(high[0], 3), os.dup2(high[1], 4)),
        )
        for fd in (to_chromium, from_chromium, *high):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)
        self.send("Page.addScriptToEvaluateOnNewDocument", source=OPEN_SHADOWS, session=True)
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                  mobile=False, session=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self._commands)
        os.close(self._replies)
        self._process.kill()
        self._process.wait(timeout=30)

    def send(self, method: str, *, session: bool = False, timeout: float = 60, **params: Any) -> Any:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({self._process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def evaluate(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True, session=True)[
            "result"
        ].get("value")

    def open(self, url: str, timeout: float = 30) -> dict[str, Any]:
        """Load ``url``, wait until every diagram is drawn (or ``timeout``), return INSPECT's
        answer plus ``errors``: console errors, uncaught exceptions and failed loads."""
        self.events.clear()
        self.send("Page.navigate", url=url, session=True)
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self._receive(deadline))
        while True:
            page: dict[str, Any] = json.loads(self.evaluate(INSPECT))
            if page["waiting"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        page["errors"] = [error for event in self.events if (error := _error(event))]
        return page

    def screenshot(self, path: Path, scroll_to: str | None = None) -> None:
        """A PNG of the viewport, first scrolled to the element ``scroll_to`` (a CSS selector)."""
        if scroll_to:
            self.evaluate(f"document.querySelector({json.dumps(scroll_to)})?.scrollIntoView()")
            time.sleep(0.2)
        data = self.send("Page.captureScreenshot", format="png", session=True)["data"]
        path.write_bytes(base64.b64decode(data))


def _error(event: dict[str, Any]) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        words = (str(arg.get("value", arg.get("description"))) for arg in params["args"])
        return "console.error: " + " ".join(words)
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        return f"log: {params['entry']['text']} {params['entry'].get('url', '')}"
    return None
