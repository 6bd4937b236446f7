"""Batched generation (robust_sft.models.generation) vs one `model.generate` call per prompt.

Same model, same prompts, greedy, in one run. Default model: a tiny random Llama with the organism tokenizer
(no build needed; it rarely emits end-of-turn, so both sides decode the full `--max-new-tokens`);
`--organism` uses the cached organism base model instead (built on first use).

    python bench/generate_throughput.py [--prompts 64] [--batch-size 32] [--organism]
Last line: speedup_vs_per_prompt=X
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from robust_sft.models.generation import SamplingConfig, chat_prompt_ids, generate_hf
from robust_sft.organism import world
from robust_sft.organism.tokenizer import build_tokenizer
from robust_sft.tasks import get_task


def random_llama(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=384, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )).eval()


def organism_prompts(count: int) -> list[list[dict]]:
    """Test prompts cycling through all organism tasks (varied lengths)."""
    tasks = [get_task(name) for name in world.TASKS]
    per_task = [t.load("test", limit=count) for t in tasks]
    return [[{"role": "user", "content": tasks[i % len(tasks)].prompt(per_task[i % len(tasks)][i // len(tasks)])}]
            for i in range(count)]


@torch.inference_mode()
def per_prompt(model, tok, chats, config: SamplingConfig) -> list[str]:
    """The naive baseline: one unpadded generate call per prompt."""
    outs = []
    for ids in chat_prompt_ids(tok, chats):
        x = torch.tensor([ids])
        y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                           max_new_tokens=config.max_new_tokens, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)
        outs.append(tok.decode(y[0, x.shape[1]:], skip_special_tokens=True))
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--organism", action="store_true", help="use the organism's (shipped) base model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.organism:
        from robust_sft.models.loading import load_model, load_tokenizer
        from robust_sft.organism.store import base_model_path

        path = str(base_model_path())
        model, tok = load_model(path, device="cpu"), load_tokenizer(path)
    else:
        tok = build_tokenizer()
        model = random_llama(tok)
    chats = organism_prompts(args.prompts)
    config = SamplingConfig(max_new_tokens=args.max_new_tokens)

    generate_hf(model, tok, chats[:2], config, batch_size=2, progress=False)  # warm-up
    start = time.perf_counter()
    batched = generate_hf(model, tok, chats, config, batch_size=args.batch_size, progress=False)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    naive = per_prompt(model, tok, chats, config)
    t_naive = time.perf_counter() - start

    agree = sum(b[0] == n for b, n in zip(batched, naive)) / len(chats)
    print(f"model={'organism' if args.organism else 'random-llama'} prompts={len(chats)} "
          f"batch_size={args.batch_size} max_new_tokens={args.max_new_tokens}")
    print(f"batched: {t_batched:.2f}s ({len(chats) / t_batched:.1f} prompts/s)")
    print(f"per-prompt: {t_naive:.2f}s ({len(chats) / t_naive:.1f} prompts/s)")
    print(f"greedy outputs identical: {agree:.0%}")
    print(f"speedup_vs_per_prompt={t_naive / t_batched:.2f}")


if __name__ == "__main__":
    main()
