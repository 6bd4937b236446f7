"""Reading SFT examples and tokenizing them once.

Every later stage (scoring, masking, training) works on the `input_ids` produced here, so the ids that
were scored are exactly the ids that are trained on; nothing is tokenized twice.

Accepted shapes of a row:
- prompt/answer columns (names configurable; `completion`, `response` and `output` are accepted as answers);
  TRL's conversational prompt/completion (both lists of messages) too;
- chat `messages` ([{"role", "content"}, ...]); every assistant turn is trained;
- ShareGPT `conversations` ([{"from", "value"}, ...]).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from robust_sft.core.config_types import Options, check_choice
from robust_sft.data.rows import DataError, iter_rows  # noqa: F401 (DataError: raised for bad rows, public here)

logger = logging.getLogger(__name__)

ANSWER_FIELDS = ("answer", "completion", "response", "output")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}

# Used only when a tokenizer has no chat template of its own. The assistant turn ends with the eos token,
# which is trained, like a real template's end-of-turn token.
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass
class Example:
    """One conversation; assistant turns are the training targets."""

    id: str
    messages: list[dict[str, str]]


@dataclass
class TokenizedExample:
    id: str
    input_ids: list[int]
    answer_mask: list[bool]  # True on trained answer tokens, end-of-turn included
    truncated: bool = False
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass
class DataFormat:
    """How to read rows into conversations."""

    prompt_field: str = "prompt"
    answer_field: str | None = None  # None: the first of ANSWER_FIELDS present
    messages_field: str = "messages"
    conversations_field: str = "conversations"
    system_field: str | None = "system"
    id_field: str = "id"
    split: str = "train"
    hint_field: str | None = None  # a column whose text is appended to the prompt (hindsight's second scoring)


OnError = Literal["raise", "skip"]


@dataclass(kw_only=True)
class DataFormatOptions(Options):
    """The data-reading options of the verbs that read SFT data (`score`, `import-scores`): flat flags, one
    `DataFormat`, and what to do with a bad example."""

    on_error: OnError = field(default="raise", metadata={
        "help": "raise: stop at the first bad example; skip: skip it (each skipped example is logged)."})
    # Defaults are DataFormat's: the flags and the library's value object cannot drift apart.
    prompt_field: str = field(default=DataFormat.prompt_field, metadata={
        "help": "Prompt column of prompt/answer data."})
    answer_field: str | None = field(default=DataFormat.answer_field, metadata={
        "help": "Answer column (default: answer, completion, response or output)."})
    messages_field: str = field(default=DataFormat.messages_field, metadata={"help": "Chat messages column."})
    id_field: str = field(default=DataFormat.id_field, metadata={"help": "Example id column (row number when absent)."})
    split: str = field(default=DataFormat.split, metadata={"help": "Split of a Hub dataset or DatasetDict."})
    hint_field: str | None = field(default=DataFormat.hint_field, metadata={
        "help": "Column of a content-only hint (e.g. the final answer) appended to each row's prompt: scores the "
                "same answers with the hint, for the hindsight policy. Rows without one are read unchanged."})

    def data_format(self) -> DataFormat:
        return DataFormat(prompt_field=self.prompt_field, answer_field=self.answer_field,
                          messages_field=self.messages_field, id_field=self.id_field, split=self.split,
                          hint_field=self.hint_field)


@dataclass
class ErrorLog:
    """Rows skipped under on_error='skip', with the reason for each."""

    skipped: list[str] = field(default_factory=list)

    def handle(self, err: DataError, on_error: str) -> None:
        if on_error == "raise":
            raise err
        self.skipped.append(str(err))

    def summary(self) -> str:
        if not self.skipped:
            return "no example skipped"
        shown = "\n  ".join(self.skipped[:5])
        more = f"\n  ... and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
        return f"{len(self.skipped)} example(s) skipped:\n  {shown}{more}"


# --------------------------------------------------------------------------------------------- rows -> examples


def row_to_example(row: Any, location: str, fmt: DataFormat, index: int) -> Example:
    """Normalise one row to an Example; raise DataError naming `location` on anything malformed."""
    if not isinstance(row, dict):
        raise DataError(f"{location}: expected a JSON object, got {type(row).__name__}")
    example_id = str(row[fmt.id_field]) if row.get(fmt.id_field) is not None else str(index)
    where = f"{location} (id={example_id})"
    if row.get(fmt.messages_field) is not None:
        messages = _normalise_messages(row[fmt.messages_field], where)
    elif row.get(fmt.conversations_field) is not None:
        messages = _sharegpt_to_messages(row[fmt.conversations_field], where)
    else:
        messages = _prompt_answer_to_messages(row, fmt, where)
    _validate_conversation(messages, where)
    if fmt.hint_field and row.get(fmt.hint_field) is not None:
        hint = row[fmt.hint_field]
        if not isinstance(hint, str):
            raise DataError(f"{where}: the hint {fmt.hint_field!r} must be a string, not {type(hint).__name__}")
        messages = with_hint(messages, hint, where)
    _check_unicode(example_id, "the id", where)
    for i, m in enumerate(messages):
        _check_unicode(m["content"], f"message {i}", where)
    return Example(id=example_id, messages=messages)


HINT_SEPARATOR = "\n\n"


def with_hint(messages: list[dict[str, str]], hint: str, where: str = "") -> list[dict[str, str]]:
    """The conversation with `hint` appended to the user turn before the last answer (an empty hint: unchanged).

    Only the prompt changes, so the answer's tokens stay those of the conversation without the hint."""
    if not hint.strip():
        return messages
    last_answer = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
    user = next((k for k in range(last_answer - 1, -1, -1) if messages[k]["role"] == "user"), None)
    if user is None:
        raise DataError(f"{where}: no user turn before the last answer to put the hint in")
    out = [dict(m) for m in messages]
    out[user]["content"] = out[user]["content"] + HINT_SEPARATOR + hint
    return out


def _check_unicode(text: str, what: str, where: str) -> None:
    """JSON may hold a lone surrogate ("\\ud800"): valid JSON, not text; no tokenizer or file can take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataError(f"{where}: {what} holds a lone surrogate (U+{ord(text[err.start]):04X} at character "
                        f"{err.start}), which is not valid Unicode text") from None


def _prompt_answer_to_messages(row: dict, fmt: DataFormat, where: str) -> list[dict[str, str]]:
    answer_fields = (fmt.answer_field,) if fmt.answer_field else ANSWER_FIELDS
    answer_key = next((k for k in answer_fields if k in row), None)
    if fmt.prompt_field not in row or answer_key is None:
        raise DataError(
            f"{where}: missing field: need {fmt.prompt_field!r} and one of {list(answer_fields)}, "
            f"or {fmt.messages_field!r}, or {fmt.conversations_field!r}; row has {sorted(row)}"
        )
    prompt, answer = row[fmt.prompt_field], row[answer_key]
    if isinstance(prompt, list) and isinstance(answer, list):  # TRL conversational prompt/completion
        return _normalise_messages(prompt + answer, where)
    if not isinstance(prompt, str) or not isinstance(answer, str):
        raise DataError(f"{where}: {fmt.prompt_field!r} and {answer_key!r} must be strings")
    messages = []
    if fmt.system_field and isinstance(row.get(fmt.system_field), str) and row[fmt.system_field]:
        messages.append({"role": "system", "content": row[fmt.system_field]})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return messages


def _normalise_messages(raw: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: messages must be a non-empty list")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {i} needs 'role' and 'content'")
        if m["role"] not in ("system", "user", "assistant"):
            raise DataError(f"{where}: message {i} has unknown role {m['role']!r}")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: message {i} content must be a string")
        messages.append({"role": m["role"], "content": m["content"]})
    return messages


def _sharegpt_to_messages(raw: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: conversations must be a non-empty list")
    messages = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where}: conversation turn {i} needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise DataError(f"{where}: conversation turn {i} has unknown speaker {turn['from']!r}")
        messages.append({"role": role, "content": turn["value"]})
    return _normalise_messages(messages, where)


def _validate_conversation(messages: list[dict[str, str]], where: str) -> None:
    assistant_turns = [m for m in messages if m["role"] == "assistant"]
    if not assistant_turns:
        raise DataError(f"{where}: no assistant turn to train on")
    if any(not m["content"].strip() for m in assistant_turns):
        raise DataError(f"{where}: empty answer")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the conversation must end with an assistant turn")


def read_examples(
    source: str | os.PathLike,
    fmt: DataFormat | None = None,
    *,
    on_error: str = "raise",
    errors: ErrorLog | None = None,
) -> list[Example]:
    """Read and validate every row of `source`.

    on_error="raise" stops at the first bad row with a DataError naming it; "skip" records it in `errors`.
    """
    fmt = fmt or DataFormat()
    errors = errors if errors is not None else ErrorLog()
    check_choice("on_error", on_error, OnError)
    examples, seen = [], {}
    for index, (location, row) in enumerate(iter_rows(source, fmt.split)):
        try:
            if isinstance(row, DataError):
                raise row
            example = row_to_example(row, location, fmt, index)
            if example.id in seen:
                raise DataError(f"{location}: duplicate id {example.id!r} (first at {seen[example.id]})")
        except DataError as err:
            errors.handle(err, on_error)
            continue
        seen[example.id] = location
        examples.append(example)
    if not examples:
        raise DataError(f"{source}: no usable example ({errors.summary()})")
    return examples


# --------------------------------------------------------------------------------------------- tokenization


def chat_template_of(tokenizer) -> str:
    """The tokenizer's chat template, or the documented plain fallback when it has none."""
    return tokenizer.chat_template or PLAIN_CHAT_TEMPLATE


def render_with_answer_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation once with the chat template; return the text and the char span of each reply.

    Replies are located in the rendering of the whole conversation: the conversation is rendered a second
    time with each assistant content replaced by a unique marker, and the text between markers (headers,
    generation prompts, a template's empty think block) must match the real rendering piece by piece. A
    span is the reply as the template writes it (some templates trim it) plus the special token that
    directly follows it (the end-of-turn token); nothing of the template around it is trained.
    """
    template = chat_template_of(tokenizer)

    def render(msgs) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template)

    text = render(messages)
    markers = {i: f"@@robust-sft-reply-{i}@@" for i, m in enumerate(messages) if m["role"] == "assistant"}
    skeleton = render([{**m, "content": markers[i]} if i in markers else m for i, m in enumerate(messages)])
    end_of_turn = _special_tokens_longest_first(tokenizer)
    spans, cursor, skeleton_cursor = [], 0, 0
    for i, marker in markers.items():
        at = skeleton.find(marker, skeleton_cursor)
        between = skeleton[skeleton_cursor:at]
        if at < 0 or not text.startswith(between, cursor):
            raise DataError(f"the chat template does not write assistant turn {i} verbatim")
        cursor += len(between)
        content = messages[i]["content"]
        written = next((c for c in (content, content.strip(), content.rstrip(), content.lstrip())
                        if c and text.startswith(c, cursor)), None)
        if written is None:
            raise DataError(f"the chat template changes the text of assistant turn {i}; cannot locate it")
        start, cursor = cursor, cursor + len(written)
        skeleton_cursor = at + len(marker)
        eot = next((t for t in end_of_turn if skeleton.startswith(t, skeleton_cursor)), "")
        spans.append((start, cursor + len(eot)))
    return text, spans


def _special_tokens_longest_first(tokenizer) -> list[str]:
    """Every special token's text (eos, end-of-turn and other added special tokens), longest first."""
    tokens = set(tokenizer.all_special_tokens)
    tokens |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return sorted((t for t in tokens if t), key=len, reverse=True)


def tokenize_example(tokenizer, example: Example, max_length: int) -> TokenizedExample:
    """Tokenize one conversation once: input_ids plus the mask of trained answer tokens.

    Raises DataError when the prompt alone fills `max_length`; truncates (and flags) a too-long answer.
    """
    try:
        text, spans = render_with_answer_spans(tokenizer, example.messages)
    except DataError as err:
        raise DataError(f"example {example.id}: {err}") from err
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    answer_mask = [any(lo <= start < hi for lo, hi in spans) for start, _ in encoding["offset_mapping"]]
    if not any(answer_mask):
        raise DataError(f"example {example.id}: the answer has no token after tokenization")
    first_answer = answer_mask.index(True)
    if first_answer >= max_length:
        raise DataError(
            f"example {example.id}: the prompt is {first_answer} tokens, not shorter than max_length={max_length}"
        )
    truncated = len(input_ids) > max_length
    if truncated:
        input_ids, answer_mask = input_ids[:max_length], answer_mask[:max_length]
    return TokenizedExample(example.id, input_ids, answer_mask, truncated, example.messages)


def tokenize_examples(
    tokenizer,
    examples: list[Example],
    max_length: int,
    *,
    on_error: str = "raise",
    errors: ErrorLog | None = None,
    progress: bool = True,
) -> list[TokenizedExample]:
    """Tokenize all examples; log every truncation; bad examples raise or are skipped (`on_error`)."""
    from tqdm.auto import tqdm

    _check_tokenizer(tokenizer)
    check_choice("on_error", on_error, OnError)
    errors = errors if errors is not None else ErrorLog()
    out = []
    for example in tqdm(examples, desc="tokenize", disable=not progress, leave=False):
        try:
            out.append(tokenize_example(tokenizer, example, max_length))
        except DataError as err:
            errors.handle(err, on_error)
    truncated = [t.id for t in out if t.truncated]
    if truncated:
        logger.warning(
            "%d example(s) truncated to max_length=%d (answer cut, end-of-turn lost): %s",
            len(truncated), max_length, ", ".join(truncated[:20]) + (" ..." if len(truncated) > 20 else ""),
        )
    return out


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast tokenizer is required (token offsets locate the answer); load it with use_fast=True")


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what decides the token ids: vocabulary, merges, normalizer/pre-tokenizer, special tokens, template.

    Left out: what loading or calling a tokenizer changes without changing any id (the pad token, which
    loaders set when a model has none, and the backend's padding/truncation state, set by a call with
    padding=/truncation=), so the same files always give the same fingerprint.
    """
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    for state in ("padding", "truncation"):
        backend.pop(state, None)
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if k != "pad_token"}
    h = hashlib.sha256()
    h.update(json.dumps(backend, sort_keys=True).encode())
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    h.update(chat_template_of(tokenizer).encode())
    return h.hexdigest()[:16]
