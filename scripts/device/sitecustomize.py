"""Float32 on the GPU too: imported at start-up by every Python process whose path holds this folder.

The dtype policy 'auto' (models/loading.py) trains and evaluates in bfloat16 on a GPU that supports it. The
organism was designed, and study v2's design world run, in float32 on a CPU; its held-out worlds must be run the
same way, so this shim makes 'auto' resolve to float32 there. Matrix products stay in full float32 (PyTorch does
not use TF32 for them unless asked).
"""

import torch

torch.cuda.is_bf16_supported = lambda *args, **kwargs: False
