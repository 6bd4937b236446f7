"""Does the inspect page stay usable on a real dataset? 10,000 examples of 1,000 answer tokens, in one run.

Builds the page for a synthetic score file (random token ids of the tiny tokenizer, NLLs drawn from a
heavy-tailed mixture like real SFT data: most tokens near ppl 1, a tail above 100), then opens it in
headless Chromium (Debian's package, via Playwright) and measures, next to a baseline page of 100
examples of the same length built and measured in the same run:

- page size and generation time;
- load: navigation start -> first page of examples rendered (the `load` event and the page's own
  decode + render time);
- the operations a reader does: next page, re-sort, first text search (builds the search index), a
  second search;
- scrolling: the page scrolled to its end 200 px per animation frame; frame intervals (mean, p95, max;
  16.7 ms is 60 frames per second) and frames longer than 50 ms;
- the JS heap after load.

Last line: `size_mb=... load_ratio_vs_100=... scroll_p95_ms=...`.

    python bench/inspect_scale.py [--examples 10000] [--tokens 1000] [--out bench/results/inspect_scale.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("ROBUST_SFT_CHROMIUM", "/usr/bin/chromium")

SCROLL_JS = """async () => {
  const times = [];
  let last = performance.now();
  await new Promise((done) => {
    function step(now) {
      times.push(now - last); last = now;
      window.scrollBy(0, 200);
      if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 2 || times.length > 600) done();
      else requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  });
  return times.slice(1);
}"""


def synthetic_scores(n_examples: int, n_tokens: int, tokenizer, seed: int = 0):
    from robust_sft.scoring.files import Scores

    rng = np.random.default_rng(seed)
    vocab = np.arange(len(tokenizer))
    input_ids, masks, nlls, messages = [], [], [], []
    prompt_len = 40
    for i in range(n_examples):
        ids = rng.choice(vocab, prompt_len + n_tokens)
        mask = np.zeros(prompt_len + n_tokens, bool)
        mask[prompt_len:] = True
        # 75 % of tokens near-certain, 20 % moderately surprising, 5 % very surprising (ppl 100+).
        kind = rng.choice(3, prompt_len + n_tokens, p=[0.75, 0.2, 0.05])
        nll = np.where(kind == 0, rng.exponential(0.05, kind.size),
                       np.where(kind == 1, rng.uniform(0.3, 3.0, kind.size), rng.uniform(4.6, 10.0, kind.size)))
        nll = np.where(mask, nll, np.nan).astype(np.float32)
        input_ids.append(ids)
        masks.append(mask)
        nlls.append(nll)
        messages.append([{"role": "user", "content": f"Example {i}: " + " ".join(rng.choice(
            ["sum", "sort", "the", "list", "of", "numbers", "return", "print", "value"], 30))},
                         {"role": "assistant", "content": "..."}])
    return Scores(ids=[f"ex{i}" for i in range(n_examples)], input_ids=input_ids, answer_mask=masks,
                  token_nll=nlls, messages=messages, metadata={"model": "synthetic"})


def build_page(n_examples: int, n_tokens: int, out: Path, tokenizer) -> dict:
    from robust_sft.report.inspect import write_inspect

    scores = synthetic_scores(n_examples, n_tokens, tokenizer)
    start = time.perf_counter()
    write_inspect({"GT": scores}, out, tau=2.5, tokenizer=tokenizer)
    return {"examples": n_examples, "tokens": n_examples * n_tokens, "seconds": time.perf_counter() - start,
            "bytes": out.stat().st_size}


def measure_in_browser(path: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=300_000)
        page.wait_for_function("window.inspectState && window.inspectState.ready", timeout=300_000)
        load_wall = time.perf_counter() - start
        state = page.evaluate("window.inspectState")
        nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")

        def timed(action, until):
            t = time.perf_counter()
            action()
            page.wait_for_function(until, timeout=120_000)
            return 1000 * (time.perf_counter() - t)

        renders = lambda: page.evaluate("window.inspectState.renders")  # noqa: E731
        n = renders()
        next_ms = timed(lambda: page.click("#next"), f"window.inspectState.renders > {n}")
        n = renders()
        sort_ms = timed(lambda: page.select_option("#sort", "share_desc"), f"window.inspectState.renders > {n}")
        n = renders()
        search1_ms = timed(lambda: page.fill("#search", "sum"), f"window.inspectState.renders > {n}") - 150
        n = renders()
        search2_ms = timed(lambda: page.fill("#search", "sort"), f"window.inspectState.renders > {n}") - 150
        n = renders()
        page.fill("#search", "")
        page.wait_for_function(f"window.inspectState.renders > {n}")
        page.evaluate("window.scrollTo(0, 0)")
        frames = np.array(page.evaluate(SCROLL_JS))
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        spans = page.evaluate("document.querySelectorAll('.tok span').length")
        shown = page.evaluate("document.getElementById('count').textContent")
        browser.close()
    return {"load_wall_s": load_wall, "load_event_ms": nav["loadEventEnd"], "page_script_ms": state["loadMs"],
            "first_render_ms": state["renderMs"], "next_page_ms": next_ms, "sort_ms": sort_ms,
            "first_search_ms": search1_ms, "second_search_ms": search2_ms, "frames": len(frames),
            "frame_mean_ms": float(frames.mean()), "frame_p95_ms": float(np.percentile(frames, 95)),
            "frame_max_ms": float(frames.max()), "long_frames": int((frames > 50).sum()),
            "js_heap_mb": metrics.get("JSHeapUsedSize", 0) / 2**20, "token_spans_on_page": spans, "errors": errors,
            "examples_in_page": shown.split(" of ")[-1].split()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--baseline_examples", type=int, default=100)
    parser.add_argument("--out", default="bench/results/inspect_scale.txt")
    args = parser.parse_args()

    from robust_sft.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, n in (("baseline", args.baseline_examples), ("large", args.examples)):
            page = Path(tmp) / f"{label}.html"
            rows[label] = {**build_page(n, args.tokens, page, tokenizer), **measure_in_browser(page)}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    lines = [f"# python bench/inspect_scale.py --examples {args.examples} --tokens {args.tokens}   "
             f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core {platform.machine()} CPU, {chromium}, "
             f"headless, commit {commit}, load average before the run {os.getloadavg()[0]:.1f})"]
    for label, r in rows.items():
        lines.append(
            f"{label:>8}: {r['examples']:>6} examples x {args.tokens} answer tokens = {r['tokens']:>10,} tokens | "
            f"page {r['bytes'] / 2**20:7.2f} MB, built in {r['seconds']:6.1f} s | load {r['load_wall_s']:5.2f} s "
            f"(load event {r['load_event_ms']:6.0f} ms, decode + first render {r['page_script_ms']:5.0f} ms) | "
            f"next page {r['next_page_ms']:4.0f} ms, re-sort {r['sort_ms']:4.0f} ms, first search "
            f"{r['first_search_ms']:5.0f} ms, next search {r['second_search_ms']:4.0f} ms | scroll "
            f"{r['frames']} frames: mean {r['frame_mean_ms']:4.1f} ms, p95 {r['frame_p95_ms']:4.1f} ms, max "
            f"{r['frame_max_ms']:5.1f} ms, {r['long_frames']} over 50 ms | JS heap {r['js_heap_mb']:5.0f} MB | "
            f"{r['token_spans_on_page']:,} token spans in the DOM | {r['examples_in_page']} examples in the page (default "
            f"cap: the most surprising up to 2M tokens) | errors {len(r['errors'])}")
    large, base = rows["large"], rows["baseline"]
    lines.append(json.dumps({"large": large, "baseline": base}, default=str))
    in_page = int(str(large["examples_in_page"]).replace(",", "")) * args.tokens
    lines.append(f"size_mb={large['bytes'] / 2**20:.1f} bytes_per_token_in_page={large['bytes'] / in_page:.2f} "
                 f"load_ratio_vs_{args.baseline_examples}={large['load_wall_s'] / base['load_wall_s']:.1f} "
                 f"scroll_p95_ms={large['frame_p95_ms']:.1f} (baseline {base['frame_p95_ms']:.1f})")
    lines.append(f"# load average after the run {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
