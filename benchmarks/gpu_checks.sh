#!/usr/bin/env bash
# The device checks run on a lent GPU machine (see docs/results/benchmarks.md, "GPU"), in one go:
# the CUDA-only tests, the Fisher-build benchmark on the GPU (incl. the paper's ResNet-20
# block size, 70 000) and SSSE end to end at CIFAR-10 scale. Results go to $OUT (or ./gpu-out).
# The GPU image has torch but not pydantic/optuna: wheels for those travel in .whl/.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, unlearnkit.ssse, unlearnkit.methods; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/methods tests/curvature/test_syrk.py tests/ssse/test_state_cuda.py \
  -k cuda 2>&1 | tail -25 | tee "$OUT/pytest_cuda.txt"
timeout 80 python3 benchmarks/fisher_build.py --device cuda \
  --cases 4000x1024,4000x2048,8000x256,500x4096 --out "$OUT/fisher_build_gpu.json" 2>&1 | tail -20
timeout 80 python3 benchmarks/fisher_build.py --device cuda --cases 5000x70000 --sm-rows 100 \
  --methods sherman_morrison,woodbury --repeats 2 --out "$OUT/fisher_build_gpu_70k.json" 2>&1 | tail -8
timeout 240 python3 benchmarks/cifar_scale.py --device cuda --epochs 6 --out "$OUT/cifar_scale_gpu.json" 2>&1 \
  | tail -60
echo done
