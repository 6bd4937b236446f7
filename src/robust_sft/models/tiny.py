"""Tiny local models and tokenizers for tests, benchmarks and offline runs (no Hub needed).

The tokenizer is a real byte-level BPE (`tokenizers`) with a chat template, so chat templating, offsets
and merges across turn boundaries behave like a Hugging Face LLM's; the model is a `LlamaForCausalLM`.
"""

from __future__ import annotations

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|eot|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eot|>", "<|system|>", "<|user|>", "<|assistant|>"]

_WORDS = (
    "the a an of to and in is it that for on with as was at by be this are from or have not but what all "
    "were when we there can said which do their if will each about how up out them then she many some so "
    "these would other into has more her two like him see time could no make than first been its who now "
    "people my made over did down only way find use may water long little very after words called just "
    "where most know get through back much before go good new write our used me man too any day same right "
    "sum sort list number answer reverse count word letter digit value result python code def return print"
).split()


def training_corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """Pseudo-text with words, digits and code-like punctuation, to train a small BPE."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.4:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        sep = rng.choice([" ", " ", ", ", "_", "(", ") = ", ": "])
        lines.append(sep.join(words) + rng.choice([".", "?", "!", "", ":\n"]))
    return lines


def build_tokenizer(vocab_size: int = 512, seed: int = 0, chat_template: str | None = CHAT_TEMPLATE):
    """A byte-level BPE `PreTrainedTokenizerFast` with chat special tokens; eos is the end-of-turn token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(seed=seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|bos|>",
        eos_token="<|eot|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(
    tokenizer,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    seed: int = 0,
    tie_word_embeddings: bool = False,
):
    """A randomly initialised tiny `LlamaForCausalLM` matching `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    return LlamaForCausalLM(config)


def save_tiny(directory: str | Path, **model_kwargs) -> Path:
    """Build and save a tiny tokenizer + model pair loadable with `from_pretrained(directory)`."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, **model_kwargs)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
