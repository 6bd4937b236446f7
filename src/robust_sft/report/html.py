"""report.html of a run: report.md as HTML with its figures embedded, and the inspect pages of its training sets.

The page is report.md itself (the one source of the tables and the claims) turned into HTML, plus the
figures as inline PNGs and, per method, a link to the inspect page of the data it trained on. It opens
from disk and can be shared as one file (the links need the run's inspect pages beside it).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from robust_sft.core.artifacts import write_text
from robust_sft.core.rundir import INSPECT_PAGE, RunDir, gt_inspect_page
from robust_sft.report.inspect import write_inspect
from robust_sft.report.markdown import SOURCE_LABELS
from robust_sft.tasks.base import get_task, has_answer_span

FIGURES = {"ti_vs_bwt.png": "Target gain (TI) against forgetting (BWT), per method",
           "ppl_vs_bwt.png": "Perplexity of the trained tokens against forgetting (BWT), per method",
           "tau_sweep.png": "STM threshold sweep: BWT and TI against the share of tokens masked",
           "token_ppl_hist.png": "Answer-token perplexity of each training set under the base model",
           "lr_control.png": "Learning-rate control: TI against BWT per (method, learning rate)",
           # written by `robust-sft analyze RUN_DIR`: embedded when the report is built after it
           "mechanism_scatter.png": "Forgetting (BWT) against each mechanism measure, every fine-tuned model",
           "delta_norm_per_layer.png": "Norm of the weight update per layer, per method",
           "loss_curves.png": "Training-loss curves, per method"}

STYLE = """body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d1d1f;max-width:1100px;
margin:0 auto;padding:18px 26px 40px}h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;
padding-bottom:3px}table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #e2e2e6;padding:3px 9px;
text-align:left;vertical-align:top}th{background:#f5f5f7}code{background:#f2f2f4;padding:0 3px;border-radius:3px}
figure{margin:14px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:13px}
.held{color:#16794c}.nothled{color:#b3261e}.nottested{color:#777}"""


def _inline(text: str) -> str:
    """Escape, then the inline Markdown report.md uses: `code` and **bold**."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", lambda m: f'<b class="{_status_class(m.group(1))}">{m.group(1)}</b>', text)


def _status_class(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(markdown: str) -> str:
    """The Markdown subset report.md is written in: # headings, pipe tables, paragraphs, inline code/bold."""
    out, lines, k = [], markdown.splitlines(), 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            k += 1
        elif line.startswith("|"):
            rows = []
            while k < len(lines) and lines[k].startswith("|"):
                rows.append(lines[k])
                k += 1
            header, body = rows[0], [r for r in rows[1:] if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(header)) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body]
            out.append("</table>")
        elif line.strip():
            para = []
            while k < len(lines) and lines[k].strip() and not lines[k].startswith(("#", "|")):
                para.append(lines[k])
                k += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        else:
            k += 1
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- inspect pages


def inspect_views(plan: dict) -> dict[str, str]:
    """Page (relative to the run directory) showing each variant's training set with the mask it trains with.

    Every set side by side at the control tau is inspect.html; an STM variant at another tau gets a GT page
    at its own tau, inspect/gt_tau<tau>.html.
    """
    views = {}
    for variant in plan["variants"]:
        tau = variant["tau"]
        if variant["method"] == "stm" and tau is not None and tau != plan["control_tau"]:
            views[variant["name"]] = gt_inspect_page(tau)
        else:
            views[variant["name"]] = INSPECT_PAGE
    return views


def write_inspect_pages(run: RunDir, plan: dict, results: dict, tokenizer) -> dict[str, str]:
    """Write the inspect pages of a run's training sets (with the run's own evidence); return inspect_views."""
    views = inspect_views(plan)
    all_sets = {SOURCE_LABELS.get(s, s): run.scores_file(s) for s in plan["sources"]}
    pages = {INSPECT_PAGE: (all_sets, plan["control_tau"], f"{results['name']}: the training sets, token by token")}
    for variant in plan["variants"]:
        if views[variant["name"]] != INSPECT_PAGE:
            tau = variant["tau"]
            pages[views[variant["name"]]] = ({"GT": run.scores_file("gt")}, tau, f"{results['name']}: GT at tau {tau:g}")
    # What each policy would mask, split by the target's answer span, with hindsight where GT was scored with hints.
    target = get_task(plan["target"], **plan["task_kwargs"].get(plan["target"], {}))
    span_task = target if has_answer_span(target) else None
    hinted = {"GT": run.hinted_scores_file("gt")} if run.hinted_scores_file("gt").exists() else {}
    for page in sorted(set(views.values())):
        named, tau, title = pages[page]
        write_inspect(named, run.page(page), tau=tau, tokenizer=tokenizer, evidence=results, title=title,
                      span_task=span_task, hinted={n: h for n, h in hinted.items() if n in named})
    return views


# --------------------------------------------------------------------------------------------- report.html


# What a policy keeps although its perplexity is above tau.
KEPT_ABOVE_TAU = {"answer_aware": ", except in the answer span", "hindsight": ", except where the hint explains it",
                  "departure_kept": ", except each answer's departure token"}


def render_report_html(results: dict, markdown: str, figures_dir: Path, views: dict[str, str]) -> str:
    body = [markdown_to_html(markdown)]
    if views:
        body.append("<h2>Each method's training data, token by token</h2><table><tr><th>method</th><th>training set"
                    "</th><th>page</th></tr>")
        for name, page in views.items():
            method = results["methods"].get(name, {})
            source = method.get("source", "")
            mask = f"masked above tau {method['tau']:g}" if method.get("tau") is not None else "every answer token"
            mask += KEPT_ABOVE_TAU.get(method.get("method"), "")
            body.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(source)}, {html.escape(mask)}</td>"
                        f'<td><a href="{html.escape(page)}">{html.escape(page)}</a></td></tr>')
        body.append("</table>")
    body.append("<h2>Figures</h2>")
    for file, caption in FIGURES.items():
        path = figures_dir / file
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)} (<code>figures/{file}</code>)</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(results["name"])}: '
            f"robust-sft report</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report_html(run: RunDir, results: dict, markdown: str, views: dict[str, str]) -> Path:
    write_text(run.report_html_file, render_report_html(results, markdown, run.figures_dir, views))
    return run.report_html_file
