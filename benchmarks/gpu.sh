#!/usr/bin/env bash
# fi_sim's engine benchmark on a GPU machine: the same measurements and table as `make bench`.
#
#   benchmarks/gpu.sh [OUT_DIR] [extra options of python -m benchmarks.run]
#
# Run from the repository root (or anywhere: it changes there) with a Python that has fi_sim installed
# (`pip install -e .`) and a CUDA build of jax. PYTHON selects the interpreter (default: .venv/bin/python if it
# exists, else python3). The PyTorch peer is eager CPU PyTorch by definition; it runs on the GPU machine's CPU
# if torch is installed there, and is skipped otherwise. Writes OUT_DIR/results.json (default benchmarks/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT="${1:-benchmarks/gpu}"
shift || true
if ! "$PY" -c "import fi_sim" 2>/dev/null; then
  echo "gpu.sh: fi_sim is not importable with $PY; install it first: $PY -m pip install -e ." >&2
  exit 2
fi
if ! "$PY" - <<'PYCHECK'
import sys
try:
    import jax
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
except Exception as err:  # no CUDA plugin, driver mismatch, ...
    print(f"gpu.sh: JAX cannot use a GPU here ({err})", file=sys.stderr)
    sys.exit(1)
if not gpus:
    print(f"gpu.sh: JAX sees no GPU (devices: {jax.devices()}); install a CUDA build of jax, "
          "e.g. pip install 'jax[cuda12]' from a local wheel mirror", file=sys.stderr)
    sys.exit(1)
print(f"gpu.sh: {len(gpus)} GPU(s): {gpus[0].device_kind}", file=sys.stderr)
PYCHECK
then
  exit 2
fi
EXTRA=()
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu.sh: torch is not installed: the PyTorch peer is skipped" >&2
  EXTRA+=(--skip-torch)
fi
exec "$PY" -m benchmarks.run --device gpu --out "$OUT" ${EXTRA[@]+"${EXTRA[@]}"} "$@"
