#!/usr/bin/env bash
# The generation benches on a lent CUDA machine, in under 10 minutes: images/s of `ris generate` per stage on the
# synthetic world (float32 and bfloat16 autocast), and the cached DCS decoder against its FLOP floor at the paper's
# setting (K = 5 masks, 20 steps) for coca_ViT-B-32 and the paper's coca_ViT-L-14, with the bfloat16 token agreement.
#
#   bash bench/gpu_check.sh                # on a CUDA machine, from the repository root
#   bash bench/gpu_check.sh --device cpu   # smoke run at tiny sizes (the default tests run this)
set -euo pipefail
device=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    *) echo "usage: bash bench/gpu_check.sh [--device cuda|cpu]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x "$python" ]] || python=python3
if [[ "$device" == cpu ]]; then
  "$python" bench/generation_stages.py --tiny --images 2 --device cpu
  "$python" bench/dcs_decoding.py --model tiny-coca --masks 2 --steps 2 --repeats 1 --skip-official --device cpu \
    --precision bfloat16
  exit 0
fi
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --device cpu')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for precision in float32 bfloat16; do
  echo "== ris generate by stage, synthetic world, 200 images, $precision"
  "$python" bench/generation_stages.py --images 200 --device cuda --threads 4 --precision "$precision" \
    --images-per-decode 16
done
for model in coca_ViT-B-32 coca_ViT-L-14; do
  echo "== DCS decoding, $model, K = 5, 20 steps"
  "$python" bench/dcs_decoding.py --model "$model" --masks 5 --steps 20 --repeats 3 --skip-official --device cuda \
    --precision bfloat16
done
