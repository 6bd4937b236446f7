"""Answer tokens per second of our scorer, against a naive loop and the bare forward pass, in one run.

- naive:   one forward per example, float32 log-softmax over the full vocabulary at every position
           (what the original implementation does);
- forward: `model(**batch)` on exactly the batches our scorer uses, nothing else (the limit for any
           scorer that needs a forward pass; it still computes head logits at every position);
- ours:    `robust_sft.scoring.token_nll.score_tokenized` with its default batching (length-bucketed batches on a
           GPU; on this CPU one unpadded example per batch, which is faster there), head + float32
           logsumexp on answer positions only.

Each method runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own. The model is
a randomly initialised ~10M-parameter Llama (speed does not depend on the weights); 512 examples of
20 to 400 tokens, 30% prompt. Last line: `speedup_vs_naive=X fraction_of_forward=Y`.

    python bench/score_throughput.py [--examples 512] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VOCAB, HIDDEN, LAYERS, HEADS = 16384, 256, 4, 4


def build(n_examples: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from robust_sft.data.examples import TokenizedExample

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=4 * HIDDEN,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                         max_position_embeddings=512, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(n_examples):
        length = int(torch.randint(20, 401, (1,), generator=gen))
        ids = torch.randint(1, VOCAB, (length,), generator=gen).tolist()
        prompt = max(1, int(0.3 * length))
        examples.append(TokenizedExample(str(i), ids, [False] * prompt + [True] * (length - prompt)))
    return model, examples


def run_naive(model, examples) -> None:
    import torch

    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e.input_ids])
            log_probs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
            nll = -log_probs[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
            _ = nll[torch.tensor(e.answer_mask[1:])]


def run_forward(model, examples) -> None:
    import torch

    from robust_sft.scoring.batching import default_batch_tokens, pad_batch, plan_batches
    from robust_sft.scoring.token_nll import _mask_if_padded

    batches = plan_batches([len(e.input_ids) for e in examples], default_batch_tokens(DEVICE), MAX_BATCH)
    with torch.no_grad():
        for batch in batches:
            ids, attention, positions, _ = pad_batch(
                [examples[i].input_ids for i in batch], [examples[i].answer_mask for i in batch], 0
            )
            model(input_ids=ids, attention_mask=_mask_if_padded(attention), position_ids=positions)


def run_ours(model, examples) -> None:
    from robust_sft.scoring.token_nll import score_tokenized

    score_tokenized(model, examples, pad_id=0, max_batch_size=MAX_BATCH, progress=False)  # default batching


MAX_BATCH = 64
DEVICE = "cpu"
METHODS = {"naive": run_naive, "forward": run_forward, "ours": run_ours}


def child(method: str, n_examples: int, repeats: int, naive_examples: int) -> None:
    """Time one method in this process and print a JSON line."""
    model, examples = build(n_examples)
    if method == "naive":
        # The naive loop is slow; its tokens/s is measured on the first examples (same length distribution).
        examples = examples[:naive_examples]
    METHODS[method](model, examples[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        METHODS[method](model, examples)
        best = min(best, time.perf_counter() - start)
    answer_tokens = sum(sum(e.answer_mask) for e in examples)
    print(json.dumps({
        "method": method,
        "examples": len(examples),
        "seconds": best,
        "answer_tokens_per_s": answer_tokens / best,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats inside each child process")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the methods (best kept)")
    parser.add_argument("--naive-examples", type=int, default=128,
                        help="examples timed for the naive loop (its tokens/s is the figure compared)")
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.examples, args.repeats, args.naive_examples)
        return

    import torch

    n_params = sum(p.numel() for p in build(1)[0].parameters())
    print(f"model: Llama {LAYERS} layers x {HIDDEN}, vocab {VOCAB}, {n_params / 1e6:.1f}M parameters; "
          f"{args.examples} examples of 20-400 tokens; torch threads {torch.get_num_threads()}")
    # Methods are interleaved over rounds and each keeps its best time, so a load change on the machine
    # during one method's run does not skew the ratios (a single sequential pass once did, by 15x).
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for method in METHODS:
            line = subprocess.run(
                [sys.executable, __file__, "--child", method, "--examples", str(args.examples),
                 "--repeats", str(args.repeats), "--naive-examples", str(args.naive_examples)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            r = json.loads(line)
            if method not in results or r["seconds"] < results[method]["seconds"]:
                results[method] = r
    for method, r in results.items():
        print(f"{method:>8}: {r['examples']:4d} examples {r['seconds']:7.2f} s  {r['answer_tokens_per_s']:9.0f} "
              f"answer tok/s  peak RSS {r['peak_rss_mb']:.0f} MB")
    speedup = results["ours"]["answer_tokens_per_s"] / results["naive"]["answer_tokens_per_s"]
    fraction = results["ours"]["answer_tokens_per_s"] / results["forward"]["answer_tokens_per_s"]
    print(f"speedup_vs_naive={speedup:.2f} fraction_of_forward={fraction:.2f}")


if __name__ == "__main__":
    main()
