"""D5 probe: easier variants of the addition target (D4: 0.14 on 300 two-digit sums), 128 new tokens, 100 items each.  PYTHONPATH=src python docs/real/probes/d3_variants.py MODEL_DIR"""
import random, re, sys, json
from pathlib import Path
MODEL = sys.argv[1]  # the model directory (SmolLM2 saved as a plain HF directory)
import torch
from robust_sft.models.loading import load_model, load_tokenizer
from robust_sft.tasks.drills import fold, first_paragraph, country_capitals, common_words
torch.set_num_threads(1)
model = load_model(MODEL); tok = load_tokenizer(MODEL); tok.padding_side = "left"
def gen(prompts, n=128):
    outs = []
    for i in range(0, len(prompts), 50):
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts[i:i+50]]
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=n, do_sample=False, stop_strings=["\n\n"], tokenizer=tok)
        outs += [tok.decode(o[enc.input_ids.shape[1]:], skip_special_tokens=True) for o in out]
    return outs
rng = random.Random(1)
import countryinfo
pop = {}
for c in countryinfo.all_countries():
    try: pop[c.name().lower()] = c.population() or 0
    except Exception: pass
big = [(c, k) for c, k in country_capitals() if pop.get(c.lower(), 0) >= 1_000_000]
print("countries >= 1M:", len(big))
ones = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
def words(n): return ones[n] if n < 20 else tens[n // 10] + ("" if n % 10 == 0 else " " + ones[n % 10])
lastnum = lambda o: (re.findall(r"-?\d+", first_paragraph(o)) or [None])[-1]
probes = {
 "add_tens": [(f"What is {a} + {b}?", str(a + b), lastnum) for a, b in [(rng.randrange(10, 100), 10 * rng.randrange(1, 10)) for _ in range(100)]],
 "add22_calculate": [(f"Calculate {a} + {b}.", str(a + b), lastnum) for a, b in [(rng.randrange(10, 100), rng.randrange(10, 100)) for _ in range(100)]],
 "add22_nocarry_small": [(f"What is {a} + {b}?", str(a + b), lastnum) for a, b in [(10 * rng.randrange(1, 5) + rng.randrange(0, 5), 10 * rng.randrange(1, 5) + rng.randrange(0, 5)) for _ in range(100)]],
}
from robust_sft.tasks import get_task
letter = get_task("drill/first_letter")  # named drill/letter (first or last letter) when D2 ran
res = {}
for name, items in probes.items():
    outs = gen([p for p, _, _ in items])
    ok = []
    for (p, a, f), o in zip(items, outs):
        if f: ok.append(f(o) == a)
        elif name == "first_letter": ok.append(letter.extract(o) == a)
        else: ok.append(f" {a} " in f" {fold(first_paragraph(o).replace('-', ' '))} ")
    res[name] = sum(ok) / len(ok)
    print(name, res[name], [o[:80] for o in outs[:3]], flush=True)
json.dump(res, open(Path(__file__).with_name("d5_variants.json"), "w"))  # beside this script
