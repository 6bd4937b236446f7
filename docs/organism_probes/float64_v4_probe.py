"""The float64 probe of docs/organism_v5.md (D11): world v4's definition pretrained in float64, under one kernel.

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 \
        python docs/organism_probes/float64_v4_probe.py avx2 runs/float64/avx2
(the kernel settings of scripts/organism_kernels.py). Prints the setting and the base accuracies as JSON.
"""

import json
import sys
import time

import torch

import robust_sft.organism.base_model as v4

setting, out = sys.argv[1], sys.argv[2]
float32_model = v4.new_model
v4.new_model = lambda config, tok: float32_model(config, tok).double()  # the only change: pretrain in float64
start = time.time()
path = v4.build_base_model(cache_dir=out, config=v4.OrganismConfig(seed=0, threads=1), progress=False)
print(json.dumps({"setting": setting, "capability": torch.backends.cpu.get_cpu_capability(),
                  "seconds": round(time.time() - start), **json.load(open(path / "base_eval.json"))["accuracy"]}))
