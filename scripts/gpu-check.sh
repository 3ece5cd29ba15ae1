#!/usr/bin/env bash
# lmbench on a lent NVIDIA GPU machine, in at most 8 minutes, from a copy of the repository,
# with no network (docs/gpu.md):
#
#   bash scripts/gpu-check.sh [--dry-run] [--pack] [--budget SECONDS] [--device cuda|cpu]
#                             [--suite NAME_OR_TOML] OUTDIR
#
# 1. checks for the GPU (nvidia-smi): without one it stops at once, exit 3 (--device cpu
#    runs the same steps on the CPU: the plumbing, proven where there is no GPU);
# 2. makes lmbench importable without touching the machine's own packages: if the Python
#    ($LMBENCH_PYTHON, default python3) does not import this checkout's lmbench already, it is
#    installed with pip into a folder of its own put on PYTHONPATH, offline: its build tools and
#    the dependencies the machine lacks come from wheels/ (`make gpu-wheels` fills it; carry it);
# 3. needs PTB: data/ptb (`lmbench download`, then carry data/ptb), $LMBENCH_DATA_DIR or
#    $LMBENCH_PTB_MIRROR;
# 4. prints nvidia-smi and the versions, then hands over to scripts/gpu_check.py: verify,
#    peak, the quick suite's cells under the budget guard, the report, cells-left.txt.
#
# Everything lands in OUTDIR, the whole output in OUTDIR/log.txt. --pack (for the device
# tool, which returns at most 8 files) leaves OUTDIR with log.txt, report.md, cells-left.txt
# and gpu-check.tar.gz holding everything. --dry-run prints the plan and each cell's time
# estimate, checks for no GPU and runs nothing.
set -u -o pipefail
STARTED_AT=$(date +%s.%N)
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${LMBENCH_PYTHON:-python3}

usage() { echo "usage: bash scripts/gpu-check.sh [--dry-run] [--pack] [--budget SECONDS] [--device cuda|cpu]" \
  "[--suite NAME_OR_TOML] OUTDIR" >&2; exit 2; }
DRY=0 PACK=0 BUDGET=480 DEVICE=cuda SUITE=gpu-quick OUTDIR=
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --pack) PACK=1 ;;
    --budget) [ $# -ge 2 ] || usage; BUDGET=$2; shift ;;
    --device) [ $# -ge 2 ] || usage; DEVICE=$2; shift ;;
    --suite) [ $# -ge 2 ] || usage; SUITE=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "gpu-check: unknown option $1" >&2; usage ;;
    *) [ -z "$OUTDIR" ] || usage; OUTDIR=$1 ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || usage
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu-check: --device $DEVICE: allowed: cuda, cpu" >&2; exit 2 ;; esac
case "$BUDGET" in ''|*[!0-9.]*) echo "gpu-check: --budget $BUDGET: give a number of seconds" >&2; exit 2 ;; esac
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/log.txt
# --pack: the work goes to a folder of its own, packed into OUTDIR at the end
if [ "$PACK" = 1 ]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmbench-gpu-check.XXXXXX"); else WORK=$OUTDIR; fi
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

elapsed() { awk -v s="$STARTED_AT" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }'; }
say() { echo "[gpu-check +$(elapsed)s] $*"; }

SITE= DROVE=0
finish() {  # on exit: the installed copy goes; with --pack the work is packed into OUTDIR
  [ -z "$SITE" ] || rm -rf "$SITE"
  [ "$WORK" != "$OUTDIR" ] || return 0
  if [ "$DROVE" = 1 ] && [ "$DRY" = 0 ]; then
    cp "$LOG" "$WORK/log.txt" 2>/dev/null
    tar -czf "$OUTDIR/gpu-check.tar.gz" -C "$WORK" . && say "packed $WORK into $OUTDIR/gpu-check.tar.gz"
    [ -f "$WORK/cells-left.txt" ] && cp "$WORK/cells-left.txt" "$OUTDIR/"
    [ -f "$WORK/report/report.md" ] && cp "$WORK/report/report.md" "$OUTDIR/"
  fi
  rm -rf "$WORK"
}
trap finish EXIT

say "lmbench gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET} s, device $DEVICE, output $OUTDIR"
say "checkout: $REPO; commit $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo 'unknown (no git here)')"

# 1. the GPU: without one, stop before anything else
if [ "$DRY" = 0 ] && [ "$DEVICE" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "no CUDA device: nvidia-smi is not installed here, so there is no NVIDIA driver to run on." \
        "Run this on the lent GPU machine (docs/gpu.md), or --dry-run for the plan, or --device cpu for the plumbing."
    exit 3
  fi
  if ! GPUS=$(nvidia-smi -L 2>&1) || ! echo "$GPUS" | grep -q '^GPU '; then
    say "no CUDA device: nvidia-smi -L lists no GPU ($GPUS)." \
        "Run this on the lent GPU machine (docs/gpu.md), or --dry-run for the plan, or --device cpu for the plumbing."
    exit 3
  fi
fi

# 2. lmbench importable, the machine's packages untouched
if "$PY" - "$REPO/lmbench" <<'EOF' 2>/dev/null
import os, sys
import lmbench.backends, lmbench.suites, platformdirs  # noqa: F401 -- platformdirs: such machines lack it
sys.exit(os.path.realpath(os.path.dirname(lmbench.__file__)) != os.path.realpath(sys.argv[1]))
EOF
then
  say "lmbench: $PY imports this checkout's lmbench already"
else
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/lmbench-gpu-site.XXXXXX")
  if ls wheels/build/*.whl >/dev/null 2>&1; then
    # offline: the build runs isolated, with setuptools and wheel from wheels/build/; the
    # dependencies the machine lacks are wheels/*.whl
    say "lmbench: installing this checkout into $SITE (pip --target, no index: $(cd wheels && ls *.whl build/*.whl | tr '\n' ' '))"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index --find-links wheels/build --no-deps \
      --no-compile --target "$SITE" . wheels/*.whl
  else
    say "lmbench: no wheels/ (make gpu-wheels): building with this Python's own setuptools (needs >= 77)"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-build-isolation \
      --no-compile --target "$SITE" .
  fi || { say "lmbench could not be installed (above); fill wheels/ with 'make gpu-wheels' and carry it"; exit 2; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # run from the checkout (data/ is found there), Python would import ./lmbench -- the source
  # folder, without lmbench.backends -- before the installed package: not with a safe path
  export PYTHONSAFEPATH=1
  "$PY" - "$SITE" <<'EOF' || { say "lmbench is still not importable from $SITE"; exit 2; }
import os, sys
import lmbench.backends, lmbench.suites, platformdirs  # noqa: F401
assert os.path.realpath(lmbench.__file__).startswith(os.path.realpath(sys.argv[1])), lmbench.__file__
EOF
  say "lmbench: importable from $SITE (PYTHONPATH)"
fi

# 3. PTB, offline
if [ -z "${LMBENCH_PTB_MIRROR:-}${LMBENCH_DATA_DIR:-}" ]; then
  for f in ptb.train.txt ptb.valid.txt ptb.test.txt; do
    [ -f "data/ptb/$f" ] || { say "no PTB: data/ptb/$f is missing. Run 'lmbench download' in the checkout" \
      "and carry data/ptb (docs/gpu.md), or set LMBENCH_PTB_MIRROR to a folder holding the three files"; exit 2; }
  done
fi
"$PY" -m lmbench download >/dev/null || { say "PTB could not be verified (above)"; exit 2; }

# 4. the machine, then the measurements
if [ "$DRY" = 0 ]; then
  if [ "$DEVICE" = cuda ]; then
    say "nvidia-smi:"; nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  fi
  say "Python: $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"
  "$PY" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(torch|jax|jaxlib|jax-cuda[0-9]+-(plugin|pjrt)|nvidia-cudnn-cu[0-9]+|numpy|pandas|scipy|matplotlib|tqdm|tabulate|platformdirs|triton) ' \
    || say "(pip list gave nothing)"
fi
DROVE=1
"$PY" scripts/gpu_check.py "$WORK" --started-at "$STARTED_AT" --budget "$BUDGET" --device "$DEVICE" --python "$PY" \
  --suite "$SUITE" \
  $([ "$DRY" = 1 ] && echo --dry-run)
code=$?
say "done: exit $code, $(elapsed) s"
exit $code
