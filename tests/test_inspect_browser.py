"""The inspect page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Loads the page from disk, checks there is no console error, that the heat-map colours and masks the tokens
it should, that sorting, filtering and paging work, and takes a screenshot.
"""

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from robust_sft.report.inspect import PPL_CLASS_BOUNDS, dequantise_nll, quantise_nll, write_inspect
from robust_sft.scoring.files import Scores, load_scores, sequence_perplexity

CHROMIUM = os.environ.get("ROBUST_SFT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ROBUST_SFT_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def open_page(browser, path, errors):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_function("window.inspectState && window.inspectState.ready", timeout=30_000)
    return page


def shown_ids(page) -> list[str]:
    return page.eval_on_selector_all(".ex .exh", "els => els.map(e => e.textContent.split('id ')[1])")


def searched_texts(named: dict[str, Scores], tokenizer) -> dict[str, str]:
    """Per example id, the lower-cased text the page's search looks in: the prompt, then each file's answer tokens."""
    from robust_sft.report.inspect import _answer_positions, _prompt_text, token_strings

    first = next(iter(named.values()))
    strings = token_strings(tokenizer, range(len(tokenizer)))
    texts = {i: _prompt_text(first.messages[k]) for k, i in enumerate(first.ids)}
    for scores in named.values():
        for k, i in enumerate(scores.ids):
            texts[i] += "".join(strings[t] for t in scores.input_ids[k][_answer_positions(scores, k)]) + "\n"
    return {i: text.lower() for i, text in texts.items()}


def expected_class(nll: float, tau: float) -> str:
    ppl = math.exp(float(dequantise_nll(quantise_nll(np.array([nll]), tau), tau)[0]))
    return f"c{next((k for k, b in enumerate(PPL_CLASS_BOUNDS) if ppl <= b), len(PPL_CLASS_BOUNDS))}"


def test_page_in_headless_chromium(browser, scores_path, tiny_tokenizer, tmp_path):
    tau = 2.5
    gt = load_scores(scores_path)
    # A second training set of the same prompts with lower perplexity and two prompts missing.
    low = Scores(ids=gt.ids[2:], input_ids=gt.input_ids[2:], answer_mask=gt.answer_mask[2:],
                 token_nll=[n * 0.15 for n in gt.token_nll[2:]], messages=gt.messages[2:], metadata=gt.metadata)
    out = write_inspect({"GT": gt, "Self-Output": low}, tmp_path / "inspect.html", tau=tau,
                        page_size=20)
    errors = []
    page = open_page(browser, out, errors)

    # Default: most surprising first (GT's sequence perplexity, descending), 20 per page.
    seq = {gt.ids[i]: sequence_perplexity(gt.answer_nll(i)) for i in range(len(gt))}
    by_ppl = sorted(gt.ids, key=lambda i: -seq[i])
    assert shown_ids(page) == by_ppl[:20]
    assert page.inner_text("#pageinfo") == "page 1 / 2"

    # Heat-map: one span per answer token of each answer shown, coloured by its perplexity class, masked above tau.
    first = gt.ids.index(by_ppl[0])
    nll = gt.token_nll[first][gt.answer_mask[first]]
    spans = page.eval_on_selector_all(".ex:first-child .ans:first-child .tok span", "els => els.map(e => e.className)")
    assert len(spans) == len(nll)
    assert [c.split()[0] for c in spans] == [expected_class(v, tau) for v in nll]
    assert ["m" in c.split() for c in spans] == list(nll > math.log(tau))
    assert page.locator(".ex:first-child .ans:nth-child(2) .tok span").count() == (
        0 if by_ppl[0] in gt.ids[:2] else len(nll))

    # Hover shows the value.
    page.hover(".ex:first-child .ans:first-child .tok span >> nth=0")
    assert page.inner_text("#tip").startswith("ppl ")

    # Sorting.
    page.select_option("#sort", "ppl_asc")
    assert shown_ids(page) == by_ppl[::-1][:20]
    page.select_option("#sort", "share_desc")
    share = {gt.ids[i]: float((gt.answer_nll(i) > math.log(tau)).mean()) for i in range(len(gt))}
    assert [share[i] for i in shown_ids(page)] == sorted(share.values(), reverse=True)[:20]
    page.select_option("#sort", "ppl_desc")

    # Filtering: by text (a prompt of one example), then back to all; paging.
    target = gt.messages[5][0]["content"]
    page.fill("#search", target)
    page.wait_for_function(f"document.querySelectorAll('.ex').length === "
                           f"{sum(target in m[0]['content'] for m in gt.messages)}")
    assert gt.ids[5] in shown_ids(page)
    page.fill("#search", "")
    page.wait_for_function("document.querySelectorAll('.ex').length === 20")
    page.click("#next")
    assert shown_ids(page) == by_ppl[20:40] and page.inner_text("#pageinfo") == "page 2 / 2"

    # A high-perplexity token of the list filters to the examples whose prompt or answers contain it: the first
    # token of the list that some examples lack, so that a filter letting everything through would show.
    texts = searched_texts({"GT": gt, "Self-Output": low}, tiny_tokenizer)
    chips = page.locator("#tops .chip")
    tokens = [chips.nth(k).get_attribute("data-token") for k in range(chips.count())]
    k, matching = next((k, m) for k, t in enumerate(tokens)
                       if 0 < len(m := [i for i in by_ppl if t.lower() in texts[i]]) < len(gt))
    chips.nth(k).click()
    assert page.input_value("#search") == tokens[k]
    page.wait_for_function(f"document.querySelectorAll('.ex').length === {min(len(matching), 20)}")
    assert shown_ids(page) == matching[:20]

    screenshot = tmp_path / "inspect.png"
    page.fill("#search", "")
    page.wait_for_function("document.querySelectorAll('.ex').length === 20")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:4] == b"\x89PNG" and screenshot.stat().st_size > 20_000
    assert errors == []
    page.close()


HOSTILE_TOKENS = ['"onmouseover="window.__pwned=1" x="', "<img src=x onerror=window.__pwned=2>", "it's \"quoted\" & <b>"]


def test_hostile_tokens_render_as_text(browser, scores_path, tmp_path):
    """A tokenizer may add any token: its text must stay text, in the chips' attributes and in the heat-map."""
    from robust_sft.data.examples import tokenizer_fingerprint
    from robust_sft.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_tokens(HOSTILE_TOKENS)
    hostile = tokenizer.convert_tokens_to_ids(HOSTILE_TOKENS)
    gt = load_scores(scores_path)
    input_ids, token_nll = [ids.copy() for ids in gt.input_ids], [n.copy() for n in gt.token_nll]
    for i in range(len(gt)):  # the first answer tokens of every example become the hostile ones, all surprising
        start = int(np.flatnonzero(gt.answer_mask[i])[0]) + 1
        input_ids[i][start:start + 3] = hostile
        token_nll[i][start:start + 3] = 20.0
    scores = Scores(ids=gt.ids, input_ids=input_ids, answer_mask=gt.answer_mask, token_nll=token_nll,
                    messages=gt.messages, metadata={**gt.metadata, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer)})
    out = write_inspect({"GT": scores}, tmp_path / "inspect.html", tau=1e6, tokenizer=tokenizer, page_size=5)
    errors = []
    page = open_page(browser, out, errors)
    chips = page.locator("#tops .chip")
    assert sorted(chips.nth(k).get_attribute("data-token") for k in range(3)) == sorted(HOSTILE_TOKENS)
    for k in range(3):
        chips.nth(k).hover()
    page.hover(".ex:first-child .tok span >> nth=1")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('[onmouseover], [onerror], img').length") == 0
    assert all(t in page.inner_text("#rows") for t in HOSTILE_TOKENS[1:])
    chips.first.click()
    assert page.input_value("#search") == chips.first.get_attribute("data-token")
    page.wait_for_function("document.querySelectorAll('.ex').length > 0")
    assert errors == []
    page.close()


def test_the_policy_table_shows_each_policy_and_keeps_names_as_text(browser, scores_path, tmp_path):
    """What each policy would mask: one row per policy (answer-aware with a span task, hindsight with a hinted file),
    the numbers the Python side computed, and a hostile file name shown as text."""
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)
    from robust_sft.report.inspect import build_page_data

    gt = load_scores(scores_path)
    hinted = Scores(ids=gt.ids, input_ids=gt.input_ids, answer_mask=gt.answer_mask,
                    token_nll=[n * 0.5 for n in gt.token_nll], messages=gt.messages, metadata=gt.metadata)
    name = "<img src=x onerror=window.__pwned=3>"
    options = dict(tau="auto", span_task="test/even_length", hinted={name: hinted})
    out = write_inspect({name: gt}, tmp_path / "inspect.html", **options)
    rows = build_page_data({name: gt}, **options)["policies"][name]
    errors = []
    page = open_page(browser, out, errors)
    cells = page.eval_on_selector_all("#policies table tr", "trs => trs.slice(1).map(tr => "
                                      "[...tr.children].map(td => td.textContent))")
    assert [c[0] for c in cells] == ["STM", "STM, tau auto", "answer-aware", "hindsight"]
    for shown, row in zip(cells, rows):
        assert shown[2] == f"{100 * row['masked']:.1f}" and shown[3] == f"{100 * row['span_masked']:.1f}"
    assert cells[2][3] == "0.0"  # answer-aware masks nothing of the span
    assert "auto: 10 x the median answer-token perplexity" in page.inner_text("#policies")
    assert "(auto: 10 x the median" in page.inner_text("#subtitle")
    assert name in page.inner_text("#policies") and page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert errors == []
    page.close()
