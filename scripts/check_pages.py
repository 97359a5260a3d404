"""Open a results tree's pages as a reader would, in headless Chromium: report.html and each
trade-off page. On each page the weight slider is dragged with the mouse, the title must
follow it, the console must stay free of errors and no request may leave the machine; a
screenshot is saved before and after the drag.

    python scripts/check_pages.py demo_results/lambda_betavae_results --out page_check/

Needs Debian's ``chromium`` (``apt-get install chromium``); nothing from PyPI. Chromium is
driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
ending in NUL on file descriptors 3 and 4), so no driver package is needed. Prints one
line per page and exits 1 if any page failed a check.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 60


class Browser:
    """One headless Chromium, one page, commands and events over the DevTools pipe."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="check-pages-")
        def onto_3_and_4():
            # Chromium reads commands on fd 3 and writes replies on fd 4. Move both ends out of
            # the way first, so that placing one cannot overwrite the other.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        # close_fds=False: fds 3 and 4 must survive; every other fd Python made closes on exec.
        self._proc = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=onto_3_and_4)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = TIMEOUT_S) -> dict:
        deadline = time.time() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        params = {"format": "png", "captureBeyondViewport": full_page}
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.write_bytes(base64.b64decode(data))

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y, button="left",
                  clickCount=1 if kind != "mouseMoved" else 0)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, and requests that are not file:// or data:."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console error: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log error: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file://", "data:", "about:")):
                    found.append(f"network request: {url}")
            elif method == "Network.loadingFailed":
                found.append(f"failed to load: {params.get('errorText')}")
        return found

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)


# Plot k's slider rail, grip and title (Plotly's SVG classes), after scrolling plot k into view.
SLIDER = """(k => {
    const p = document.querySelectorAll('.js-plotly-plot')[k];
    p.scrollIntoView({block: 'center'});
    const rail = p.querySelector('.slider-rail-rect'), grip = p.querySelector('.slider-grip-rect');
    const title = p.querySelector('.gtitle');
    if (!rail || !grip) return null;
    const r = rail.getBoundingClientRect(), g = grip.getBoundingClientRect();
    return JSON.stringify({rail: [r.left, r.width], grip: [g.left + g.width / 2, g.top + g.height / 2],
                           title: title ? title.textContent : ''});
})(%d)"""


def drag_sliders(browser: Browser, to_fraction: float) -> list[str]:
    """Drag each plot's slider grip to ``to_fraction`` of its rail; return what went wrong."""
    wrong = []
    count = browser.evaluate("document.querySelectorAll('.js-plotly-plot').length")
    if count == 0:
        return ["no plot with a slider on the page"]
    for k in range(count):
        browser.evaluate(SLIDER % k)                  # scrolls plot k into view ...
        time.sleep(0.3)
        state = browser.evaluate(SLIDER % k)          # ... and measures it where it settled
        if state is None:
            wrong.append(f"plot {k}: no slider")
            continue
        state = json.loads(state)
        (left, width), (gx, gy) = state["rail"], state["grip"]
        x_to = left + to_fraction * width
        browser.mouse("mousePressed", gx, gy)
        for step in range(1, 11):
            browser.mouse("mouseMoved", gx + (x_to - gx) * step / 10, gy)
        browser.mouse("mouseReleased", x_to, gy)
        time.sleep(0.3)
        title = json.loads(browser.evaluate(SLIDER % k))["title"]
        want = f"w = {round(100 * to_fraction)} %"
        if want not in title:
            wrong.append(f"plot {k}: after the drag the title reads {title[:80]!r}, not {want!r}")
    return wrong


def check_page(browser: Browser, page: Path, out: Path, to_fraction: float) -> list[str]:
    browser.open(page.resolve().as_uri())
    browser.evaluate("new Promise(r => setTimeout(r, 500))")
    # What a reader sees: the top of the page, then the last plot after its slider moved.
    browser.screenshot(out / f"{page.stem}.png", full_page=False)
    wrong = drag_sliders(browser, to_fraction)
    browser.screenshot(out / f"{page.stem}_slider_moved.png", full_page=False)
    return wrong + browser.problems()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a λ stage root: the folder holding report.html")
    parser.add_argument("--out", type=Path, default=Path("page_check"), help="where the screenshots go")
    parser.add_argument("--to", type=float, default=0.8, help="where to drag each slider (fraction of its rail)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the browser binary")
    args = parser.parse_args(argv)
    pages = [args.root / "report.html", *sorted(args.root.glob("tradeoff_*.html"))]
    missing = [p for p in pages if not p.is_file()]
    if missing:
        print(f"check_pages: {missing[0]} does not exist; give a λ stage root written by main_lambda.py")
        return 2
    if not shutil.which(args.chromium):
        print(f"check_pages: {args.chromium} not found; install it with: apt-get install chromium")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    browser = Browser(args.chromium)
    try:
        for page in pages:
            wrong = check_page(browser, page, args.out, args.to)
            failed += bool(wrong)
            size = page.stat().st_size
            print(f"{'FAIL' if wrong else 'ok  '} {page.name} ({size / 1e6:.2f} MB): "
                  + ("; ".join(wrong) if wrong else f"slider moved to {round(100 * args.to)} %, no console "
                     f"error, no network request; screenshots in {args.out}/"))
    finally:
        browser.close()
    bundle = args.root / "plotly.min.js"
    total = sum(p.stat().st_size for p in pages) + (bundle.stat().st_size if bundle.exists() else 0)
    print(f"{len(pages)} pages, {sum(p.stat().st_size for p in pages) / 1e6:.2f} MB, plus plotly.min.js "
          f"{bundle.stat().st_size / 1e6 if bundle.exists() else 0:.2f} MB: {total / 1e6:.2f} MB of HTML and "
          f"JavaScript in {args.root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
