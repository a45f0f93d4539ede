"""Screenshots of a sweep in the MLflow UI, taken by a headless Chromium.

    python scripts/screenshots.py                       # the latest sweep of the project's store
    python scripts/screenshots.py --tracking-uri http://127.0.0.1:5000 --parent RUN_ID --out shots/

Five pictures land in ``--out`` (default ``reports/screenshots``):

- ``report.png``: the first screen of the sweep's decision report (``decision/report.html``);
- ``experiment.png``: the experiment's run list, the sweep's parent expanded to its children;
- ``parent.png``: the parent run (its description holds the recommendation and the ranking);
- ``child.png``: one job's run (the first ok one): params under their Hydra keys, metrics, tags;
- ``compare.png``: MLflow's compare view of the sweep's ok children.

A tracking URI that is not a server (the default ``sqlite:///mlruns/mlflow.db``) is served for
the time of the script by ``mlflow server`` on a free loopback port.  The browser is Debian's
``chromium`` driven through Selenium and Debian's ``chromium-driver`` (``apt-get install chromium
chromium-driver``, ``pip install selenium``; other paths: ``--chromium``, ``--chromedriver``).
Where there is none, the script says so and exits 3 (skipped), taking nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = 3
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH, HEIGHT = 1600, 1000
# the UI's own component ids (MLflow 3.x): the assistant panel's close button, a parent run's expander
CLOSE_ASSISTANT = "[data-component-id='mlflow.assistant.chat_panel.close']"
EXPANDER = "button[data-component-id$='runnamecellrenderer.tsx_46']"


class Skip(RuntimeError):
    """What is missing to take the screenshots here."""


def browser(chromium: str | None, chromedriver: str | None):
    """A headless Chromium through Selenium, or :class:`Skip` naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise Skip("selenium is not installed (pip install selenium)") from None
    binary = chromium or next((p for p in map(shutil.which, CHROMIUM) if p), None)
    if not binary:
        raise Skip("no Chromium on this machine (apt-get install chromium chromium-driver)")
    driver = chromedriver or shutil.which("chromedriver")
    if not driver:
        raise Skip("no chromedriver on this machine (apt-get install chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    # the page itself 1600x1000 (--window-size counts the window's own frame in)
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    )
    return chrome


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def serve(tracking_uri: str, log: Path) -> tuple[str, subprocess.Popen | None]:
    """The UI's address: the server itself, or ``mlflow server`` started on the store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), None
    port = _free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        if _healthy(url):
            return url, proc
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"mlflow server did not answer on {url} (log: {log})")


def sweep_runs(tracking_uri: str, parent: str | None):
    """The parent run and its child runs (MLflow's client API)."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri)
    exps = [e.experiment_id for e in c.search_experiments()]
    if parent is None:
        found = c.search_runs(exps, "tags.`sweep.role` = 'parent'", order_by=["attributes.start_time DESC"], max_results=1)
        if not found:
            raise SystemExit(f"no sweep in {tracking_uri}: run one first (pipeline +sweep=smoke)")
        parent = found[0].info.run_id
    prun = c.get_run(parent)
    children = c.search_runs([prun.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=500)
    return prun, children


def _settle(driver, text: str | None, timeout: float = 30) -> None:
    """Wait until the page shows ``text`` (the React app has rendered), then for its charts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if text:
        try:
            WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)
        except Exception:
            print(f"  (the page did not show {text!r} within {timeout:.0f} s; taken as it is)", file=sys.stderr)
    time.sleep(2.5)


def _click_all(driver, selector: str) -> int:
    """Click every element ``selector`` finds; returns how many took the click."""
    from selenium.webdriver.common.by import By

    clicked = 0
    for element in driver.find_elements(By.CSS_SELECTOR, selector):
        try:
            element.click()
            clicked += 1
        except Exception:
            continue
    return clicked


def _report_html(prun, out: Path, tracking_uri: str | None) -> Path | None:
    """The parent's ``decision/report.html`` artifact, downloaded into ``out`` (None without one)."""
    import mlflow

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=prun.info.run_id, artifact_path="decision/report.html", dst_path=str(out / "artifacts"), tracking_uri=tracking_uri
            )
        )
    except Exception as exc:  # an undecided sweep: no report to show
        print(f"  (no decision/report.html on the parent run: {type(exc).__name__})", file=sys.stderr)
        return None


def take(url: str, prun, children, out: Path, driver, tracking_uri: str | None = None) -> list[Path]:
    exp = prun.info.experiment_id
    ok = [r for r in children if r.data.tags.get("status") == "ok"] or list(children)
    child = sorted(ok, key=lambda r: r.info.start_time or 0)[0] if ok else None
    shots = []

    def shot(name: str, route: str, wait_for: str | None, before=None) -> None:
        driver.get(f"{url}/#{route}")
        _settle(driver, wait_for)
        if _click_all(driver, CLOSE_ASSISTANT):  # the assistant panel opens itself on a first visit
            time.sleep(0.5)
        if before is not None:
            before()
            time.sleep(1.5)
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        shots.append(path)
        print(f"  {path}", flush=True)

    def expand() -> None:
        if not _click_all(driver, EXPANDER):
            print("  (no parent run to expand in the run list: this MLflow's page differs)", file=sys.stderr)

    shot("experiment", f"/experiments/{exp}/runs", prun.info.run_name, before=expand)
    shot("parent", f"/experiments/{exp}/runs/{prun.info.run_id}", prun.info.run_name)
    report = _report_html(prun, out, tracking_uri)
    if report is not None:  # the decision report's first screen, as a reader opens it
        driver.get(report.as_uri())
        time.sleep(1.0)
        driver.save_screenshot(str(out / "report.png"))
        shots.append(out / "report.png")
        print(f"  {out / 'report.png'}", flush=True)
    if child is not None:
        shot("child", f"/experiments/{exp}/runs/{child.info.run_id}", child.info.run_name)
    if len(ok) >= 2:
        ids = json.dumps([r.info.run_id for r in ok[:10]])
        shot("compare", f"/compare-runs?runs={ids}&experiments={json.dumps([exp])}", ok[0].info.run_name)
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}")
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "screenshots")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--chromedriver", help="the chromedriver binary (default: chromedriver on PATH)")
    args = parser.parse_args(argv)
    try:
        driver = browser(args.chromium, args.chromedriver)
    except Skip as exc:
        print(f"screenshots skipped: {exc}", file=sys.stderr)
        return SKIPPED
    server = None
    try:
        prun, children = sweep_runs(args.tracking_uri, args.parent)
        args.out.mkdir(parents=True, exist_ok=True)
        url, server = serve(args.tracking_uri, args.out / "mlflow-server.log")
        print(f"MLflow UI {url}, sweep {prun.info.run_name} ({prun.info.run_id}), {len(children)} child runs:", flush=True)
        take(url, prun, children, args.out, driver, args.tracking_uri)
    finally:
        driver.quit()
        if server is not None:  # the server and its workers (a session of their own)
            import signal

            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
