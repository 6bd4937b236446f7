"""Probe: an organism without count, with sort and max at low pretraining shares (to see which is learnable)."""
import json, random, sys, math, time
from pathlib import Path
import torch
from robust_sft.organism import world
from robust_sft.organism import base_model as bm
from robust_sft.organism.tokenizer import build_tokenizer
from robust_sft.evaluation import evaluate_tasks
from robust_sft.training import collate
from tqdm.auto import tqdm

shares = json.loads(sys.argv[1])  # task -> share
out = Path(sys.argv[2])
tasks = tuple(t for t in world.TASKS if t != "organism/count")
world.TASKS = tasks
config = bm.OrganismConfig()
torch.set_num_threads(2)
tok = build_tokenizer()
model = bm.new_model(config, tok)
pools, rewrites = bm.pretraining_pools(tok, config)
names = list(pools)
weights = [shares.get(n, 1.0) for n in names]
rng = random.Random(config.seed)
opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
model.train()
for step in tqdm(range(config.steps), mininterval=10):
    warm = min(1.0, (step + 1) / config.warmup_steps)
    cos = 0.1 + 0.45 * (1 + math.cos(math.pi * step / config.steps))
    for g in opt.param_groups:
        g["lr"] = config.lr * warm * cos
    if step % config.rephrase_every == config.rephrase_every - 1:
        rows = rng.sample(rewrites, config.batch_size // 2)
    else:
        rows = [rng.choice(pools[n]) for n in rng.choices(names, weights, k=config.batch_size)]
    batch = collate([{"input_ids": i, "labels": l} for i, l in rows], tok.pad_token_id)
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
model.eval()
acc = evaluate_tasks(model, tok, list(tasks), limit=300, batch_size=100, progress=False)
print(json.dumps(acc, indent=1))
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out); tok.save_pretrained(out)
(out / "base_eval.json").write_text(json.dumps({"accuracy": acc, "shares": shares}))
