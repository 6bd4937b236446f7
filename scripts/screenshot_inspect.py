"""Screenshots of a run's inspect page for the README: the summary and figures, and the token heat-map.

    python scripts/screenshot_inspect.py runs/demo --out docs/demo

writes OUT/inspect_summary.png and OUT/inspect_examples.png from RUN_DIR/inspect.html (headless Debian
Chromium through Playwright; ROBUST_SFT_CHROMIUM names another Chromium binary) and copies the page itself
to OUT/inspect.html. Fails on any console error in the page.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("ROBUST_SFT_CHROMIUM", "/usr/bin/chromium")


def screenshot(page_path: Path, out_dir: Path, width: int = 1280) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1.5)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.resolve().as_uri())
        page.wait_for_function("window.inspectState && window.inspectState.ready", timeout=120_000)
        summary = out_dir / "inspect_summary.png"
        top = page.locator("h1").bounding_box()["y"]
        bottom = page.locator("#tops").bounding_box()
        page.screenshot(path=str(summary), full_page=True,
                        clip={"x": 0, "y": max(top - 12, 0), "width": width, "height": bottom["y"] - top + 12})
        examples = out_dir / "inspect_examples.png"
        # The examples with the (sticky) sort and filter bar at the top of the window.
        page.evaluate("window.scrollTo(0, document.querySelector('.controls').offsetTop)")
        page.screenshot(path=str(examples), clip={"x": 0, "y": 0, "width": width, "height": 900})
        browser.close()
    if errors:
        raise RuntimeError(f"{page_path}: console errors: {errors}")
    return [summary, examples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory with inspect.html (robust-sft run / demo / report)")
    parser.add_argument("--out", default="docs/demo", help="where the PNGs and a copy of the page go")
    args = parser.parse_args()
    page = Path(args.run_dir) / "inspect.html"
    if not page.exists():
        raise SystemExit(f"{page}: no such page; `robust-sft report {args.run_dir}` writes it")
    for path in screenshot(page, Path(args.out)):
        print(f"wrote {path}")
    shutil.copyfile(page, Path(args.out) / "inspect.html")
    print(f"wrote {Path(args.out) / 'inspect.html'}")


if __name__ == "__main__":
    main()
