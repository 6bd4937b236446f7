"""`robust-sft inspect`: one self-contained HTML page showing which answer tokens the model finds surprising.

The page is built from score files (one or several of the same prompts: GT, Self-Output, Rephrase, ...):
a side-by-side summary, what each token policy would mask (STM at tau and at tau auto; answer-aware with a task
that says where its checker reads; hindsight with a hinted score file), the token-perplexity histogram, the share
STM would mask against tau, the most frequent high-perplexity tokens, a forgetting-risk line, and every example
as a token heat-map.

It must stay light on real datasets (10,000 examples of 1,000 tokens), so token data travel compactly:
each distinct token id is decoded once into a string table; every answer token is then a little-endian
index into that table plus one byte of quantised NLL, base64-encoded. The page decodes them once and
renders one page of examples at a time. Every number in the summary is computed here, exactly, from the
unrounded NLLs; only the per-token colours and hover values use the quantised ones.
The two figures are drawn by inspect_figures.py; the page's HTML and script are templates/inspect.html.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import check_output_file, write_text
from robust_sft.evaluation.metrics import spearman
from robust_sft.masking.diagnostics import answer_span_flags, keeps_of, mask_location
from robust_sft.masking.hindsight import align_hinted
from robust_sft.masking.policies import (
    AUTO,
    MaskPolicy,
    SpanTaskOption,
    ThresholdOption,
    apply_policy,
    check_tau,
    resolve_tau,
)
from robust_sft.models.loading import load_tokenizer
from robust_sft.report.inspect_figures import FILE_COLOURS, curve_svg, histogram, histogram_svg, masked_curve
from robust_sft.scoring.files import Scores, check_token_ids, check_tokenizer_matches, load_scores, sequence_perplexity
from robust_sft.scoring.stats import summarize
from robust_sft.tasks.base import Task, get_task

# NLL quantisation: one byte per token, 1/16 nat per step, centred on log(tau) so that
# "code > CODE_TAU" is exactly "ppl > tau" (the tokens STM masks) for the page's tau.
STEPS_PER_NAT = 16
CODE_TAU = 63
# Colour classes of the heat-map: upper perplexity bounds of each class (the last is open).
PPL_CLASS_BOUNDS = (1.1, 1.5, 2, 3, 5, 10, 30, 100, 1000)
TOP_TOKENS = 30
# Answer tokens carried in the page by default (~4.2 bytes each: a 2-byte string index and a 1-byte NLL,
# base64): beyond it the page keeps the most surprising prompts and says so; the summary always covers all.
DEFAULT_MAX_TOKENS = 2_000_000
# Examples per page of the heat-map: as many as hold about this many token spans (5 to 50); the DOM, not
# the dataset, is what makes a page slow, so a page costs the same for 100 or 100,000 examples.
PAGE_TOKENS = 8000


# --------------------------------------------------------------------------------------------- pure helpers


def quantise_nll(nll: np.ndarray, tau: float) -> np.ndarray:
    """One byte per token: code > CODE_TAU exactly when nll > log(tau); 1/16-nat steps, clipped at both ends."""
    offset = np.ceil((np.asarray(nll, np.float64) - math.log(tau)) * STEPS_PER_NAT)
    return np.clip(offset + CODE_TAU, 0, 255).astype(np.uint8)


def dequantise_nll(codes: np.ndarray, tau: float) -> np.ndarray:
    """Midpoint of each code's NLL interval (the page does the same in JavaScript)."""
    return math.log(tau) + (np.asarray(codes, np.float64) - CODE_TAU - 0.5) / STEPS_PER_NAT


def token_strings(tokenizer, token_ids) -> dict[int, str]:
    """Display text of each token id, decoded once (SentencePiece's word marker becomes a space)."""
    ids = [int(i) for i in token_ids]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    out = {}
    for i, piece in zip(ids, pieces):
        if piece is None:
            out[i] = f"<{i}>"
            continue
        text = tokenizer.convert_tokens_to_string([piece])
        if piece.startswith("\u2581") and not text.startswith(" "):  # decoders strip a leading space
            text = " " + text
        out[i] = text
    return out


def _answer_positions(scores: Scores, i: int) -> np.ndarray:
    return np.flatnonzero(scores.answer_mask[i] & ~np.isnan(scores.token_nll[i]))


def _prompt_text(messages: list[dict]) -> str:
    """The conversation before the last assistant turn (what the model is asked), as plain text."""
    last = max((k for k, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    turns = messages[:last]
    if len(turns) == 1:
        return str(turns[0].get("content", ""))
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in turns)


# --------------------------------------------------------------------------------------------- per file


def file_summary(scores: Scores, tau: float) -> dict:
    """Exact statistics of one score file at tau (the page's summary table): `stats.summarize`'s, plus what STM
    at tau would mask."""
    stats = summarize(scores, [tau])
    per_example = [scores.answer_nll(i) for i in range(len(scores))]
    masked_per_example = [int((n > math.log(tau)).sum()) for n in per_example]
    return {
        **{k: stats[k] for k in ("examples", "answer_tokens", "sequence_ppl_mean", "sequence_ppl_var",
                                 "mean_token_nll")},
        "pct_tokens_above_tau": stats["pct_tokens_ppl_above"][str(tau)],
        "masked_tokens": sum(masked_per_example),
        "examples_with_masked_tokens": int(sum(m > 0 for m in masked_per_example)),
        "examples_fully_masked": int(sum(m == len(n) and len(n) > 0 for m, n in zip(masked_per_example, per_example))),
    }


def top_surprising_tokens(scores: Scores, strings: dict[int, str], tau: float, k: int = TOP_TOKENS) -> list[dict]:
    """Tokens most often above tau: their text, how often above tau, the share of their occurrences that is."""
    ids, nll = [], []
    for i in range(len(scores)):
        pos = _answer_positions(scores, i)
        ids.append(scores.input_ids[i][pos])
        nll.append(scores.token_nll[i][pos])
    if not ids:
        return []
    ids, nll = np.concatenate(ids), np.concatenate(nll)
    above = nll > math.log(tau)
    uniq, total = np.unique(ids, return_counts=True)
    high_ids, high = np.unique(ids[above], return_counts=True)
    total_of = dict(zip(uniq.tolist(), total.tolist()))
    order = np.argsort(-high, kind="stable")[:k]
    return [{"token": strings.get(int(high_ids[j]), f"<{int(high_ids[j])}>"), "above": int(high[j]),
             "share": float(high[j] / total_of[int(high_ids[j])])} for j in order]


def risk_line(summary: dict, tau: float) -> str:
    """The dataset's forgetting-risk heuristic, stated as what it is."""
    return (f"{summary['pct_tokens_above_tau']:.1f} % of answer tokens have perplexity above {tau:g}, and the mean "
            f"answer-token NLL is {summary['mean_token_nll']:.2f} nats (token perplexity "
            f"{math.exp(summary['mean_token_nll']):.2f}). This is a heuristic from the data alone, not a "
            f"prediction: the paper finds that the more surprising the trained tokens, the more a fine-tune "
            f"forgets; STM at tau {tau:g} would leave {summary['masked_tokens']} of these tokens out of the loss.")


def policy_rows(scores: Scores, tau: float, spans: list | None = None, hinted: list | None = None) -> list[dict]:
    """What each token policy would mask in one file: STM at tau and at tau auto (with its value and reason), and
    answer-aware / hindsight at tau where their inputs are given; the shares inside and outside the answer span
    (the span the task's checker reads) when `spans` are known."""
    policies = [("STM", MaskPolicy(kind="threshold", tau=tau)), ("STM, tau auto", MaskPolicy(kind="threshold", tau=AUTO))]
    if spans is not None:
        policies.append(("answer-aware", MaskPolicy(kind="answer_aware", tau=tau)))
    if hinted is not None:
        policies.append(("hindsight", MaskPolicy(kind="hindsight", tau=tau)))
    answers = [m.astype(bool) for m in scores.answer_mask]
    rows = []
    for label, policy in policies:
        result = apply_policy(scores, policy, spans=spans, hinted=hinted)
        keeps = keeps_of(scores, result)
        location = mask_location(scores, keeps, None, None, spans=spans) if spans is not None else None
        rows.append({
            "policy": label,
            "tau": result.report["tau"],
            "rule": result.report["tau_rule"],
            "masked": result.report["masked_fraction"],
            "span_masked": location["answer_tokens_masked"] if location else None,
            "prose_masked": location["prose_tokens_masked"] if location else None,
            "examples_touched": int(sum((a & ~keeps[i]).any() for i, a in enumerate(answers))),
        })
    return rows


def evidence_from_results(results: dict) -> dict | None:
    """Perplexity of the trained tokens against BWT across a run's methods, with their rank correlation."""
    points = [{"method": name, "trained_token_ppl": m["trained_token_ppl"], "bwt": m["mean"]["bwt"]}
              for name, m in results.get("methods", {}).items()
              if np.isfinite(m.get("trained_token_ppl", float("nan"))) and np.isfinite(m["mean"]["bwt"])]
    if not points:
        return None
    points.sort(key=lambda p: p["trained_token_ppl"])
    return {"run": results.get("name", ""), "model": str(results.get("model", "")), "points": points,
            "spearman": _nan_if_none(spearman([p["trained_token_ppl"] for p in points], [p["bwt"] for p in points]))}


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value  # the page shows NaN as "undefined"


# --------------------------------------------------------------------------------------------- the page


@dataclass
class _FileTokens:
    row: list[int]  # row of each example
    seq_ppl: list[float]
    share: list[float]
    n_tokens: list[int]
    token_index: np.ndarray  # concatenated answer tokens, as indices into the string table
    codes: np.ndarray  # their quantised NLLs


def _resolve_tokenizer(named: dict[str, Scores], tokenizer):
    """The tokenizer given (object or path), else the one saved with the scoring model of the first file."""
    first_name, first = next(iter(named.items()))
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        path = tokenizer if tokenizer is not None else first.metadata.get("model")
        if not path:
            raise ValueError(f"{first_name}: the score file names no model; pass a tokenizer to decode its tokens")
        try:
            tokenizer = load_tokenizer(str(path))
        except (OSError, ValueError) as err:
            raise ValueError(f"{first_name}: cannot load the tokenizer of {path!r} to decode the tokens ({err}); "
                             f"pass one explicitly (--tokenizer PATH)") from err
    for name, scores in named.items():
        if scores.metadata.get("tokenizer_fingerprint"):
            check_tokenizer_matches(scores.metadata, tokenizer, name)
    return tokenizer


def page_size_for(tokens_per_row: float) -> int:
    """Examples per page so that a page holds about PAGE_TOKENS token spans."""
    return int(min(50, max(5, PAGE_TOKENS // max(tokens_per_row, 1))))


def build_page_data(named: dict[str, Scores], tau: float | str = 2.5, tokenizer=None,
                    max_examples: int | None = None, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                    evidence: dict | None = None, title: str | None = None, page_size: int | None = None,
                    span_task: Task | str | None = None, hinted: dict[str, Scores] | None = None) -> dict:
    """Everything the page shows, as one JSON-serialisable document.

    tau "auto": the auto rule's tau of the first file (each file's own is in the policy table).
    span_task: a task (or its name) whose answer span splits the policies' masked shares, and answer-aware's row.
    hinted: file name -> its hinted score file (the same answers scored with a hint): hindsight's row."""
    tau, tau_rule = _page_tau(named, tau)
    tokenizer = _checked_tokenizer(named, tau, tokenizer)
    spans = _spans(named, span_task, tokenizer)
    hinted = {name: align_hinted(named[name], h, f"hinted scores of {name}") for name, h in (hinted or {}).items()
              if _known_file(named, name)}
    rows = _prompt_rows(named)
    keep_rows = _rows_shown(named, rows, max_examples, max_tokens)
    new_row = {old: new for new, old in enumerate(keep_rows)}
    table = _StringTable.of(named, tokenizer)
    summaries = {name: file_summary(scores, tau) for name, scores in named.items()}
    files = {name: _file_tokens(scores, tau, rows, new_row, table) for name, scores in named.items()}
    index_bytes = 2 if len(table.used) <= 2**16 else 4
    shown_tokens = sum(len(f.codes) for f in files.values())
    return {
        "title": title or "robust-sft inspect: " + ", ".join(named),
        "tau": tau,
        "tau_rule": tau_rule,
        "span_task": getattr(span_task, "name", span_task),
        "policies": {name: policy_rows(scores, tau, spans.get(name), hinted.get(name)) for name, scores in named.items()},
        "files": list(named),
        "colours": [FILE_COLOURS[k % len(FILE_COLOURS)] for k in range(len(named))],
        "model": str(next(iter(named.values())).metadata.get("model", "")),
        "total_rows": len(rows.ids),
        "row_ids": [rows.ids[r] for r in keep_rows],
        "prompts": [rows.prompts[r] for r in keep_rows],
        "strings": [table.strings[i] for i in table.used],
        "special": [k for k, i in enumerate(table.used) if i in table.special],
        "index_bytes": index_bytes,
        "quant": {"steps_per_nat": STEPS_PER_NAT, "code_tau": CODE_TAU},
        "class_bounds": list(PPL_CLASS_BOUNDS),
        "page_size": page_size or page_size_for(shown_tokens / max(len(keep_rows), 1)),
        "summary": summaries,
        "risk": {n: risk_line(s, tau) for n, s in summaries.items()},
        "evidence": evidence,
        "top_tokens": {name: top_surprising_tokens(scores, table.strings, tau) for name, scores in named.items()},
        **_figures(named, tau, summaries),
        "file_tokens": {name: _encoded(f, index_bytes) for name, f in files.items()},
    }


def _page_tau(named: dict[str, Scores], tau: float | str) -> tuple[float, str]:
    """The page's tau (its colours are centred on it) and how it was chosen: as given, or the first file's auto."""
    check_tau(tau)
    if tau != AUTO or not named:
        return tau, "fixed"
    return resolve_tau(next(iter(named.values())), MaskPolicy(tau=AUTO))


def _spans(named: dict[str, Scores], span_task, tokenizer) -> dict[str, list]:
    """Each file's answer-span flags under `span_task` (none without a task); an answer whose tokens do not spell
    its text has no span, as in the report's diagnostic."""
    if span_task is None:
        return {}
    task = get_task(span_task) if isinstance(span_task, str) else span_task
    return {name: answer_span_flags(scores, task, tokenizer, strict=False, where=name) for name, scores in named.items()}


def _known_file(named: dict[str, Scores], name: str) -> bool:
    if name not in named:
        raise ValueError(f"hinted scores given for {name!r}, which is none of the files shown ({', '.join(named)})")
    return True


def _checked_tokenizer(named: dict[str, Scores], tau: float, tokenizer):
    """The page's tokenizer, once the inputs are known to make a page: files given, a perplexity tau, and every
    token id decodable by the tokenizer (a stray id would size a table)."""
    if not named:
        raise ValueError("inspect needs at least one score file")
    if not (tau > 1 and math.isfinite(tau)):  # the page's colours are centred on log(tau)
        raise ValueError(f"tau must be > 1 and finite (a perplexity), not {tau}")
    tokenizer = _resolve_tokenizer(named, tokenizer)
    for name, scores in named.items():
        check_token_ids(np.concatenate(scores.input_ids) if len(scores) else np.zeros(0, np.int64), len(tokenizer),
                        name)
    return tokenizer


@dataclass
class _Rows:
    """The page's rows: the union of the files' example ids in first-seen order, each with its prompt."""

    of: dict[str, int]  # example id -> row
    ids: list[str]
    prompts: list[str]


def _prompt_rows(named: dict[str, Scores]) -> _Rows:
    rows = _Rows({}, [], [])
    for scores in named.values():
        for i, example_id in enumerate(scores.ids):
            if example_id not in rows.of:
                rows.of[example_id] = len(rows.ids)
                rows.ids.append(example_id)
                rows.prompts.append(_prompt_text(scores.messages[i] or []))
    return rows


def _rows_shown(named: dict[str, Scores], rows: _Rows, max_examples: int | None, max_tokens: int | None) -> list[int]:
    """The rows the heat-map carries, in row order: the most surprising (highest sequence ppl in any file) within
    max_examples and max_tokens; the summary, figures and token list still cover every example."""
    worst = np.full(len(rows.ids), -np.inf)
    row_tokens = np.zeros(len(rows.ids), np.int64)
    for scores in named.values():
        for i, example_id in enumerate(scores.ids):
            nll = scores.answer_nll(i)
            r = rows.of[example_id]
            row_tokens[r] += len(nll)
            if len(nll):
                worst[r] = max(worst[r], sequence_perplexity(nll))
    by_surprise = np.argsort(-worst, kind="stable")
    fits = np.ones(len(rows.ids), bool)
    if max_tokens:
        fits = np.cumsum(row_tokens[by_surprise]) <= max_tokens
        fits[0] = True  # at least one prompt, however long
    n_shown = int(fits.sum()) if max_examples is None else min(int(fits.sum()), max_examples)
    return sorted(by_surprise[:n_shown].tolist())


@dataclass
class _StringTable:
    """Each distinct answer token id of the files, decoded once; tokens travel as indices into `used`."""

    used: list[int]  # the distinct answer token ids, sorted
    strings: dict[int, str]  # token id -> display text
    index_of: np.ndarray  # token id -> its index in `used`
    special: set[int]  # the tokenizer's special ids

    @classmethod
    def of(cls, named: dict[str, Scores], tokenizer) -> _StringTable:
        answer_ids = [s.input_ids[i][_answer_positions(s, i)] for s in named.values() for i in range(len(s))]
        used = sorted(set(np.concatenate(answer_ids).tolist())) if any(len(s) for s in named.values()) else []
        index_of = np.full(max(used, default=0) + 1, 0, np.uint32)
        index_of[used] = np.arange(len(used), dtype=np.uint32)
        return cls(used, token_strings(tokenizer, used), index_of,
                   set(getattr(tokenizer, "all_special_ids", []) or []))


def _file_tokens(scores: Scores, tau: float, rows: _Rows, new_row: dict[int, int], table: _StringTable) -> _FileTokens:
    """One file's examples among the shown rows: per-example figures and the concatenated quantised tokens."""
    out, token_index, codes = _FileTokens([], [], [], [], np.zeros(0, np.uint32), np.zeros(0, np.uint8)), [], []
    for i, example_id in enumerate(scores.ids):
        if rows.of[example_id] not in new_row:
            continue
        pos = _answer_positions(scores, i)
        nll = scores.token_nll[i][pos]
        out.row.append(new_row[rows.of[example_id]])
        out.seq_ppl.append(round(sequence_perplexity(nll), 4) if len(nll) else None)
        out.share.append(round(float((nll > math.log(tau)).mean()), 4) if len(nll) else None)
        out.n_tokens.append(int(len(pos)))
        token_index.append(table.index_of[scores.input_ids[i][pos]])
        codes.append(quantise_nll(nll, tau))
    if token_index:
        out.token_index, out.codes = np.concatenate(token_index), np.concatenate(codes)
    return out


def _figures(named: dict[str, Scores], tau: float, summaries: dict[str, dict]) -> dict[str, str]:
    """The histogram and masked-share figures over every example of each file."""
    hists, curves = {}, {}
    for name, scores in named.items():
        all_tokens = [scores.answer_nll(i) for i in range(len(scores))]
        flat = np.concatenate(all_tokens) if all_tokens else np.zeros(0, np.float32)
        hists[name], curves[name] = histogram(flat), masked_curve(flat)
    at_tau = {n: s["pct_tokens_above_tau"] for n, s in summaries.items()}
    return {"histogram_svg": histogram_svg(hists, tau), "curve_svg": curve_svg(curves, tau, at_tau)}


def _encoded(f: _FileTokens, index_bytes: int) -> dict:
    """One file's token data as the page reads it: little-endian indices and NLL codes, base64."""
    return {"row": f.row, "seq_ppl": f.seq_ppl, "share": f.share, "n_tokens": f.n_tokens,
            "tokens": base64.b64encode(f.token_index.astype("<u2" if index_bytes == 2 else "<u4").tobytes())
            .decode("ascii"),
            "nll": base64.b64encode(f.codes.tobytes()).decode("ascii")}


def _json_for_script(obj) -> str:
    """JSON that is safe inside a <script> element (no '</script>' or '<!--' can appear)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=float).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _clean(obj):
    """NaN/inf -> None, so the document is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def render_page(data: dict) -> str:
    template = (resources.files("robust_sft.report") / "templates" / "inspect.html").read_text(encoding="utf-8")
    # One pass: a title (or any data) that contains a placeholder's name is never substituted again.
    values = {"__TITLE__": html.escape(data["title"]), "__DATA__": _json_for_script(_clean(data))}
    return re.sub("__TITLE__|__DATA__", lambda m: values[m.group(0)], template)


def write_inspect(scores: dict[str, str | Path | Scores], out: str | Path, tau: float = 2.5, tokenizer=None,
                  max_examples: int | None = None, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                  evidence: dict | str | Path | None = None, title: str | None = None,
                  page_size: int | None = None, span_task: Task | str | None = None,
                  hinted: dict[str, str | Path | Scores] | None = None) -> Path:
    """Write the inspect page of one or several score files (name -> path or Scores) to `out`.

    tokenizer: a tokenizer or its path; default: the one saved with the model named in the first file.
    max_examples, max_tokens: show at most this many prompts / answer tokens (the most surprising prompts
        first; None: no cap); the summary, figures and token list always cover every example.
    evidence: a results.json (path or dict) whose methods relate trained-token perplexity to BWT.
    page_size: examples per page of the heat-map (default: about PAGE_TOKENS tokens a page).
    span_task: a task (or name) that says where its checker reads: the policies' shares split by it.
    hinted: name -> the hinted score file of that file (hindsight's second pass).
    """
    check_output_file(out)  # before any work
    named = {name: s if isinstance(s, Scores) else load_scores(s) for name, s in scores.items()}
    hinted = {name: s if isinstance(s, Scores) else load_scores(s) for name, s in (hinted or {}).items()}
    if isinstance(evidence, (str, Path)):
        evidence = json.loads(Path(evidence).read_text())
    data = build_page_data(named, tau=tau, tokenizer=tokenizer, max_examples=max_examples, max_tokens=max_tokens,
                           evidence=evidence_from_results(evidence) if evidence else None, title=title,
                           page_size=page_size, span_task=span_task, hinted=hinted)
    write_text(out, render_page(data))
    return Path(out)


def parse_named_scores(items: list[str]) -> dict[str, str]:
    """CLI form: `path` (named by its stem) or `NAME=path`; names must be distinct."""
    named = {}
    for item in items:
        labelled = "=" in item and not Path(item).exists()
        name, path = item.split("=", 1) if labelled else (Path(item).stem, item)
        if name in named:
            raise ValueError(f"two score files are named {name!r}; label them NAME=path")
        named[name] = path
    return named


@dataclass(kw_only=True)
class InspectConfig(ThresholdOption, SpanTaskOption):
    """Options of `robust-sft inspect SCORES... --out inspect.html` (`tau`: what STM would mask is marked)."""

    scores: list[str] = field(
        metadata={"help": "Score files of the same prompts (name=path to label a column), e.g. GT=gt.parquet "
                  "Self-Output=self_output.parquet."})
    out: str = field(default="inspect.html", metadata={"help": "The HTML page to write."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer to decode the tokens (default: the scoring model's, from the file)."})
    max_examples: int | None = field(
        default=None, metadata={"help": "Show at most this many prompts (the most surprising); stats cover all."})
    max_tokens: int = field(
        default=2_000_000,
        metadata={"help": "Show the most surprising prompts up to this many answer tokens (~4.2 bytes each in the "
                  "page); 0: no cap. The summary, figures and token list cover every example."})
    evidence: str | None = field(
        default=None, metadata={"help": "results.json of an experiment: its measured perplexity-vs-BWT points."})
    title: str | None = field(default=None, metadata={"help": "Page title."})
    hinted: list[str] = field(default_factory=list, metadata={
        "help": "Hinted score files (`score --hint_field`) as NAME=path, NAME one of the files in scores: the page "
                "adds what hindsight would mask in that file."})


def inspect_scores(config: InspectConfig) -> Path:
    """`robust-sft inspect`: the page of `config.scores`, written to `config.out`."""
    return write_inspect(parse_named_scores(config.scores), config.out, tau=config.tau, tokenizer=config.tokenizer,
                         max_examples=config.max_examples, max_tokens=config.max_tokens, evidence=config.evidence,
                         title=config.title, span_task=config.span_task, hinted=parse_named_scores(config.hinted))
