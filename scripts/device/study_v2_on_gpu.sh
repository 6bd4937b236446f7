#!/bin/bash
# Study v2's settings on a GPU machine with no network (this workplace's `device` machine), from a copy of the
# repository whose .devcarry/whl/ holds wheels of the pinned transformers, peft, datasets, dill, multiprocess
# (Python 3.12); every world's base model ships in the package (shipped/v5/seed0-3).
# Each world's setting runs exactly as `robust-sft study` runs it (scripts/study_settings.py), in float32
# (sitecustomize.py beside this file), for TRAIN_SECONDS; then every unit evaluated there gets its mechanism
# measures for up to ANALYZE_SECONDS, the rest are removed, and the study directory is packed without weights
# into $OUT/study.tar.xz. The study, resumed on the CPU, redoes what was removed.
#   bash scripts/device/study_v2_on_gpu.sh TRAIN_SECONDS ANALYZE_SECONDS WORKERS
set -u
train_seconds=${1:-390}
analyze_seconds=${2:-75}
workers=${3:-16}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .devcarry/whl/*.whl || exit 1
# Every stage key starts from the base model's path: the study runs from /work/wtstudy/src on the CPU machine.
[ -e /work/wtstudy ] || ln -s "$(pwd)" /work/wtstudy || exit 1
# The package's plug-ins are found through its entry points: a dist-info beside the source, no install.
python3 - <<'PY' || exit 1
import pathlib, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(f"/tmp/site/robust_sft-{project['version']}.dist-info")
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = project["entry-points"]
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) for group, points in groups.items()))
PY
cd /work/wtstudy || exit 1
export ROBUST_SFT_CACHE=/work/cache PYTHONPATH=/tmp/site:/work/wtstudy/src:/work/wtstudy/scripts/device
export PYTHONUNBUFFERED=1
python3 - <<'PY' | tee $OUT/versions.txt
import torch, transformers, peft, datasets, pyarrow, accelerate, robust_sft.organism.versions as v
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__,
      "datasets", datasets.__version__, "pyarrow", pyarrow.__version__, "accelerate", accelerate.__version__)
print(torch.cuda.get_device_name(0), "| bf16 reported (float32 shim):", torch.cuda.is_bf16_supported(),
      "| tf32 matmul:", torch.backends.cuda.matmul.allow_tf32, "| shipped:", v.SHIPPED_ROOT)
PY
python3 scripts/study_settings.py study/study_v2.yaml --out runs/study-v2 --worlds 0 1 2 3 --workers "$workers" \
  --train_seconds "$train_seconds" --analyze_seconds "$analyze_seconds" > $OUT/study.log 2>&1 &
pid=$!
n=0
while kill -0 $pid 2>/dev/null; do
  sleep 5; n=$((n + 1))
  [ $((n % 12)) -eq 0 ] && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
wait $pid; echo "study_settings exit $?"
tar --exclude='*.safetensors' --exclude='checkpoint-*' --exclude='*.lock' --exclude='*.log' -cf - runs/study-v2 \
  | xz -T16 -3 > $OUT/study.tar.xz
ls -la $OUT
grep -v "Loading weights" $OUT/study.log | tail -8
