"""The organism's tokenizer: character level, built locally, with a ChatML-like chat template.

Character level keeps the world's string tasks (reverse, sort, count) learnable by a tiny model and
the vocabulary tiny (~100 symbols). The end-of-turn token is the eos, so generation stops at the end of
an assistant turn, as with instruct models.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BOS, EOT, PAD, UNK, TURN = "<|bos|>", "<|im_end|>", "<|pad|>", "<|unk|>", "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOT, UNK, TURN]
CHARS = "\n\t" + string.printable[:95]  # newline, tab + the 95 printable ASCII characters (space .. ~)

# ChatML-like: <|im_start|>role\ncontent<|im_end|>\n ; bos once at the start of the conversation.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh character-level tokenizer; the same vocabulary every time (no training data needed)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + sorted(set(CHARS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token, so offsets map 1:1 to characters.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[TURN],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )
