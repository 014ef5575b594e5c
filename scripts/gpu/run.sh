#!/usr/bin/env bash
# The one command of a GPU run (README, "On a GPU"). On the lent GPU machine, in the repository root,
# with the bundle of scripts/gpu/bundle.sh carried in .carry/ and OUT naming the folder that comes back:
#
#   bash scripts/gpu/run.sh
#
# Stages, each with a time budget inside an overall deadline; a stage that fails or runs out of time
# is recorded and the next one still runs:
#   node    unpack the carried Node (xz)
#   unpack  a work folder: the tracked sources, the carried node_modules and dist/
#   build   the addon against this machine's LibTorch (python3's torch) with all cores
#           (scripts/gpu/build.mjs), installed as the prebuild the loader looks for
#   tests   the CUDA test subset (test/cuda.test.ts, test/addon-types.test.ts) with the carried Node
#   vit     ViT-B/16 bf16 embedding, batch 256: vilref vs PyTorch eager and torch.compile
#   train   a ViLReF pre-training step (ViT-B/16 + BERT-base, batch 256, WSCL, queue 16384, bf16)
#           vs its PyTorch twin: samples/s and peak memory
#   profile one traced vilref ViT-B/16 encode (LibTorch profiler, VILREF_PROFILE) for the next fix
#   embed   `vilref embed` end to end from JPEG files: images/s and the GPU's busy fraction
# and writes to $OUT (at most 8 files): results.json, results.md (the table for bench/RESULTS.md),
# run.log, the prebuild vilref.<flavour>.napi.node and its .stamp.json, profile.json.xz.
#
# --cpu: the dry run of every stage on a machine without a GPU, at toy sizes, against the local
# LibTorch, into a temporary work folder (CI runs it: test/gpu-kit.test.ts). Other options:
#   --out DIR      instead of $OUT            --carry DIR   the bundle (default .carry)
#   --work DIR     the work folder             --build MODE  auto (CMake, then g++), cmake or gxx
#   --deadline S   seconds for all stages (default 450 on a GPU, 900 with --cpu)
#   --stages LIST  comma-separated subset of the stages above
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=gpu
OUT_DIR=${OUT:-}
CARRY="$ROOT/.carry"
WORK=""
BUILD_MODE=auto
DEADLINE=""
STAGES="node,unpack,build,tests,vit,train,profile,embed"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; shift ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --carry) CARRY=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --build) BUILD_MODE=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --stages) STAGES=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$OUT_DIR" ]; then
  if [ "$MODE" = cpu ]; then OUT_DIR=$(mktemp -d /tmp/vilref-gpu-out.XXXXXX); else
    echo "run.sh: OUT is not set (the folder whose files come back); or give --out DIR" >&2
    exit 2
  fi
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
CARRY=$(cd "$CARRY" 2>/dev/null && pwd || echo "$CARRY")
if [ -z "$WORK" ]; then
  if [ "$MODE" = cpu ]; then WORK=$(mktemp -d /tmp/vilref-gpu-work.XXXXXX); else WORK=/tmp/vilref-gpu; fi
fi
mkdir -p "$WORK/stages"
WORK=$(cd "$WORK" && pwd)
[ -n "$DEADLINE" ] || DEADLINE=$([ "$MODE" = cpu ] && echo 900 || echo 450)
LOG="$OUT_DIR/run.log"
: >"$LOG"
T0=$(date +%s)
NODE=""

say() { echo "[gpu-run $(($(date +%s) - T0))s] $*" | tee -a "$LOG" >&2; }
wants() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# stage NAME BUDGET CMD...: runs CMD with min(BUDGET, time left) seconds, its output in the log;
# records { status, rc, seconds } in $WORK/stages/NAME.status.json.
stage() {
  local name=$1 budget=$2
  shift 2
  local left=$((DEADLINE - ($(date +%s) - T0) - 15))
  local status rc=0 started
  if ! wants "$name"; then return 0; fi
  if [ "$left" -lt 20 ]; then
    say "$name: skipped, $left s left of the ${DEADLINE} s deadline"
    printf '{"status":"skipped","reason":"deadline","seconds":0}\n' >"$WORK/stages/$name.status.json"
    return 1
  fi
  [ "$budget" -le "$left" ] || budget=$left
  say "$name: start (budget $budget s)"
  started=$(date +%s)
  echo "===== stage $name =====" >>"$LOG"
  timeout --kill-after=10 "$budget" bash -c '"$@"' "stage-$name" "$@" >>"$LOG" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then status=ok; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; else status=failed; fi
  printf '{"status":"%s","rc":%d,"seconds":%d,"budget":%d}\n' "$status" "$rc" "$(($(date +%s) - started))" "$budget" \
    >"$WORK/stages/$name.status.json"
  say "$name: $status (rc $rc, $(($(date +%s) - started)) s)"
  return $rc
}

# ---- the stages ----
unpack_node() {
  mkdir -p "$WORK/.node"
  xz -dc "$CARRY/node.xz" >"$WORK/.node/node.tmp" && chmod +x "$WORK/.node/node.tmp" &&
    mv "$WORK/.node/node.tmp" "$WORK/.node/node" && "$WORK/.node/node" --version
}

unpack_tree() {
  # the tracked sources the stages run (a copy: the work folder is a package root of its own)
  local p
  for p in package.json ava.config.mjs bin lib native test bench scripts CMakeLists.txt tsconfig.json \
    tsconfig.build.json; do
    rm -rf "${WORK:?}/$p"
    cp -a "$ROOT/$p" "$WORK/$p" || return 1
  done
  rm -rf "$WORK/node_modules" "$WORK/dist"
  tar -xJf "$CARRY/modules.tar.xz" -C "$WORK" && tar -xJf "$CARRY/dist.tar.xz" -C "$WORK" &&
    cp "$CARRY/manifest.json" "$WORK/stages/bundle.json"
}

build_addon() {
  (cd "$WORK" && "$NODE" scripts/gpu/build.mjs --root "$WORK" --build-dir "$WORK/build" --mode "$BUILD_MODE" \
    --report "$WORK/stages/build.json")
}

run_tests() {
  local files=(test/cuda.test.ts test/addon-types.test.ts)
  (cd "$WORK" && VILREF_TEST_DEVICE=$DEVICE "$NODE" node_modules/ava/entrypoints/cli.mjs --tap --timeout 5m \
    "${files[@]}" >"$WORK/stages/tests.tap" 2>&1)
  local rc=$?
  cat "$WORK/stages/tests.tap"
  return $rc
}

bench() { # bench NAME SCRIPT ARGS...: a bench/gpu program writing its JSON result
  local name=$1 script=$2
  shift 2
  (cd "$WORK" && "$NODE" --import=tsx "$script" --json "$WORK/stages/$name.json" --python "$PYTHON" "$@")
}

export -f unpack_node unpack_tree build_addon run_tests bench

# ---- environment ----
if [ "$MODE" = gpu ]; then
  DEVICE=cuda
  PYTHON=${VILREF_PYTHON:-python3}
  SIZE=full
else
  DEVICE=cpu
  # the baselines need a Python with torch (Debian: python3-torch in /usr/bin/python3)
  PYTHON=${VILREF_BENCH_PYTHON:-}
  if [ -z "$PYTHON" ]; then
    for p in /usr/bin/python3 python3; do
      if "$p" -c 'import torch' >/dev/null 2>&1; then PYTHON=$p; break; fi
    done
  fi
  [ -n "$PYTHON" ] || PYTHON=none
  SIZE=toy
fi
export VILREF_NO_BUILD=1 VILREF_NO_APT=1 PYTHONUNBUFFERED=1
export ROOT WORK CARRY BUILD_MODE DEVICE PYTHON
[ "$MODE" = cpu ] || export VILREF_THREADS=${VILREF_THREADS:-$(nproc)}

{
  echo "mode $MODE, root $ROOT, work $WORK, out $OUT_DIR, carry $CARRY, deadline $DEADLINE s, stages $STAGES"
  uname -a
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  else
    echo "no nvidia-smi"
  fi
  "$PYTHON" -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda,
                                  "gpus", torch.cuda.device_count())' 2>&1 || true
} >>"$LOG" 2>&1

stage node 60 unpack_node && NODE="$WORK/.node/node"
export NODE
if [ -n "$NODE" ]; then
  stage unpack 60 unpack_tree
  stage build 300 build_addon
  stage tests 150 run_tests
  if [ "$SIZE" = full ]; then
    stage vit 150 bench vit bench/gpu/vit-embed.ts --device cuda --batch 256 --iters 20
    stage train 150 bench train bench/gpu/train-step.ts --device cuda --preset base --batch 256 --steps 8
    stage profile 60 bench profile bench/gpu/vit-embed.ts --device cuda --batch 256 --iters 2 --profile "$WORK/profile"
    stage embed 100 bench embed bench/gpu/embed-e2e.ts --device cuda --images 4096 --distinct 64 --size 768
  else
    stage vit 120 bench vit bench/gpu/vit-embed.ts --device cpu --toy
    stage train 120 bench train bench/gpu/train-step.ts --device cpu --preset toy --batch 4 --steps 2 --warmup 1
    stage profile 60 bench profile bench/gpu/vit-embed.ts --device cpu --toy --iters 1 --profile "$WORK/profile"
    stage embed 100 bench embed bench/gpu/embed-e2e.ts --device cpu --images 24 --distinct 6 --size 96 --toy
  fi
else
  say "no Node: nothing past the first stage can run"
fi

# ---- what comes back ----
if [ -f "$WORK/scripts/gpu/report.mjs" ]; then
  REPORT="$WORK/scripts/gpu/report.mjs"
else
  REPORT="$ROOT/scripts/gpu/report.mjs"
fi
REPORT_NODE=$NODE
[ -n "$REPORT_NODE" ] && [ -x "$REPORT_NODE" ] || REPORT_NODE=$(command -v node || true)
if [ -n "$REPORT_NODE" ]; then
  "$REPORT_NODE" "$REPORT" --work "$WORK" --out "$OUT_DIR" --mode "$MODE" --started "$T0" --deadline "$DEADLINE" \
    >>"$LOG" 2>&1 || say "report: failed (see the log)"
else
  say "report: no Node to write results.json"
fi
say "done in $(($(date +%s) - T0)) s; $OUT_DIR holds: $(ls "$OUT_DIR" | tr '\n' ' ')"
[ -f "$OUT_DIR/results.md" ] && cat "$OUT_DIR/results.md" >&2
exit 0
