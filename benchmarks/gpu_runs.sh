#!/usr/bin/env bash
# The recorded GPU runs behind docs/results/ (one H100). Usage:
#   bash benchmarks/gpu_runs.sh STAGE OUTDIR [--overwrite]
# STAGE: env | smoke | checkpoint | bench | seeds | ablations | fast. When OUTDIR already holds files, the
# stage writes into the first free OUTDIR-2, OUTDIR-3, ... and says so; --overwrite writes into OUTDIR
# itself, replacing the files the stage makes. COMPILE is added to the training commands. DATA (default
# .gpu/cifar10-jpeg.tar.gz) is the JPEG copy; EXTRA is appended to every training command (e.g. "--device
# cpu --limit-train 512 --limit-test 256 --epochs 1" to try the stages on a CPU first). RECIPE is the
# shared recipe.
#
# `fast` (one command of at most 8 minutes, so that a 10-minute call has room for the machine's start),
# in order of what matters most, each step writing its files as soon as it has measured them:
#   1. gpu_smoke.py: every SA backend against float64, bitwise repeatability, kernel times (under 1 min);
#   2. compiled step time, one process per model (COMPILED_MODELS, channels_last, batch 512, each at
#      most COMPILED_LIMIT s, default 110): each model's file is complete when its process ends, and its
#      row is appended to step_time_compiled.md at once; compiling here also fills the compile caches
#      that step 3's runs then reuse;
#   3. time to accuracy: SA-ResNet-20 and plain, compiled, channels_last, seeds in TTA_SEEDS, each run at
#      most TTA_LIMIT s (default 120); metrics.json is written every epoch, and epoch 1's wall time
#      includes whatever compiling is left, so the summary against 91.0% in 60 s counts it;
#   4. eager step time of BENCH_MODELS in BENCH_LAYOUTS (one process: the models take turns).
# BUDGET (default 450 s) bounds the whole stage: a step gets at most the time left, a step that cannot
# get its minimum is skipped, and the end lists every step skipped, cut short or failed.
# Tried on a CPU with this tiny configuration (5 minutes on 2 busy cores):
#   mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.tar.gz .gpu/
#   SMOKE="--tiny --dtype bfloat16" BENCH="--device cpu --batch-size 32 --steps 1 --rounds 1 --warmup 1" \
#   BENCH_MODELS="none sa" BENCH_LAYOUTS=on COMPILED_MODELS=sa BENCH_COMPILE=default COMPILED_LIMIT=400 TTA_COMPILE= \
#   TTA_EPOCHS=1 EXTRA="--device cpu --limit-train 512 --limit-test 256" BUDGET=1200 bash benchmarks/gpu_runs.sh fast /tmp/fast
set -euo pipefail
STAGE=${1:?usage: bash benchmarks/gpu_runs.sh STAGE OUTDIR [--overwrite]}
OUT=${2:?usage: bash benchmarks/gpu_runs.sh STAGE OUTDIR [--overwrite]}
OVERWRITE=${3:-}
if [[ -n $OVERWRITE && $OVERWRITE != --overwrite ]]; then echo "unknown option $OVERWRITE (only --overwrite)" >&2; exit 2; fi
PY=${PY:-python}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
DATA=${DATA:-.gpu/cifar10-jpeg.tar.gz}
RECIPE=${RECIPE:---epochs 40 --batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta}
EXTRA=${EXTRA:-}
COMPILE=${COMPILE:-}   # e.g. "--compile reduce-overhead"
BENCH=${BENCH:---device cuda --batch-size 512 --steps 20 --rounds 5 --warmup 5}
if [[ -d $OUT && -n $(ls -A "$OUT") && -z $OVERWRITE ]]; then
  n=2; while [[ -e $OUT-$n ]]; do n=$((n + 1)); done
  echo "$OUT already holds files: writing to $OUT-$n instead (pass --overwrite to replace them)" >&2
  OUT=$OUT-$n
fi
mkdir -p "$OUT"
case $STAGE in
  env)
    { nvidia-smi || true; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"; } > "$OUT/env.txt" 2>&1 ;;
  smoke)
    $PY benchmarks/gpu_smoke.py ${SMOKE:-} --out "$OUT/gpu_smoke.md" $OVERWRITE ;;
  checkpoint)
    $PY -m sa_torch.train --model resnet20 --attention sa --groups 4 --seed 0 --data "$DATA" $RECIPE $COMPILE $EXTRA \
        --quiet $OVERWRITE --out "$OUT/sa-resnet20-seed0" --export "$OUT/sa_resnet20_cifar10.pt" ;;
  bench)
    $PY benchmarks/bench_train_cpu.py $BENCH --channels-last both --out "$OUT/step_time_eager.md" $OVERWRITE
    $PY benchmarks/bench_train_cpu.py $BENCH --channels-last on --compile ${BENCH_COMPILE:-default} \
        --out "$OUT/step_time_compiled.md" $OVERWRITE ;;
  seeds)
    $PY -m sa_torch.train.compare --variants plain sa --seeds 0 1 2 --data "$DATA" $RECIPE $COMPILE $EXTRA --quiet \
        --source gpu-full --out "$OUT/seeds" --table "$OUT/seeds.md" --json "$OUT/seeds.json" ;;
  ablations)
    # one seed of every variant, 12 epochs, the seven runs side by side on the one GPU (images/s
    # are then not comparable with solo runs); merged into ablations.json with concurrent_runs=7
    VARIANTS="plain sa sa-no-shuffle sa-no-groupnorm sa-conv-affine se eca"
    $PY -c "from sa_torch.train.data import load_cifar10; load_cifar10('$DATA')"   # decode and cache once
    for v in $VARIANTS; do
      timeout 115 $PY -m sa_torch.train.compare --variants $v --seeds 0 --data "$DATA" ${ABLATION_RECIPE:---epochs 12 --batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta} \
          $EXTRA --quiet --source gpu-full --json "$OUT/$v.json" > "$OUT/$v.log" 2>&1 &
    done
    wait
    $PY -c "import json, sys; rows = [dict(json.load(open(f'$OUT/{v}.json'))[0], concurrent_runs=len(sys.argv) - 1) for v in sys.argv[1:]]; json.dump(rows, open('$OUT/ablations.json', 'w'), indent=1)" $VARIANTS ;;
  fast)
    BUDGET=${BUDGET:-450}
    COMPILED_MODELS=${COMPILED_MODELS:-none sa}
    NOTES=("not in this stage by design: compiled step time in NCHW and of models other than $COMPILED_MODELS (the bench stage has them)")
    exec 3>&2                                         # progress lines, whatever a step's stderr goes to
    # step NAME MIN MAX COMMAND...: runs COMMAND for at most MAX s and at most the budget left; skipped
    # when less than MIN s are left; a failure or a cut is noted, and the stage goes on.
    step() {
      local name=$1 min=$2 max=$3 left=$((BUDGET - SECONDS)) limit status=0
      shift 3
      if (( left < min )); then NOTES+=("skipped $name: $left s of the budget left, it needs $min"); return 0; fi
      limit=$(( left < max ? left : max ))
      echo "[$SECONDS s] $name (at most $limit s)" >&3
      timeout "$limit" "$@" || status=$?
      if (( status == 124 )); then NOTES+=("cut $name after $limit s")
      elif (( status != 0 )); then NOTES+=("failed $name (exit $status)"); fi
    }
    step "smoke checks" 30 75 $PY benchmarks/gpu_smoke.py ${SMOKE:-} --out "$OUT/gpu_smoke.md" $OVERWRITE
    COMPILED="$OUT/step_time_compiled.md"
    printf '# Compiled step time, one process per model\n\nRows from step_time_compiled_MODEL.md, each with its command and device.\n\n' > "$COMPILED"
    for model in $COMPILED_MODELS; do
      step "compiled step time of $model" 40 ${COMPILED_LIMIT:-110} $PY benchmarks/bench_train_cpu.py $BENCH --attention $model \
          --channels-last on --compile ${BENCH_COMPILE:-reduce-overhead} --out "$OUT/step_time_compiled_$model.md" \
          $OVERWRITE 2> "$OUT/step_time_compiled_$model.log"
      if [[ -e $OUT/step_time_compiled_$model.md ]]; then
        grep -q '^| model' "$COMPILED" || sed -n '/^| model | layout/,/^|---/p' "$OUT/step_time_compiled_$model.md" >> "$COMPILED"
        grep "^| $model | " "$OUT/step_time_compiled_$model.md" | head -1 >> "$COMPILED"
      fi
    done
    step "decoding the data" 20 90 $PY -c "from sa_torch.train.data import load_cifar10; load_cifar10('$DATA')"
    TTA_RECIPE=${TTA_RECIPE:---batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta}
    RUNS=()
    for seed in ${TTA_SEEDS:-0}; do
      for attention in sa none; do
        run="$OUT/tta/$attention-seed$seed"
        mkdir -p "$OUT/tta"
        RUNS+=("$run")
        step "time to accuracy $attention seed $seed" 30 ${TTA_LIMIT:-120} $PY -m sa_torch.train --model resnet20 \
            --attention $attention --groups 4 --seed $seed --data "$DATA" $TTA_RECIPE --epochs ${TTA_EPOCHS:-40} \
            --channels-last on ${TTA_COMPILE---compile reduce-overhead} $EXTRA --quiet --overwrite --out "$run" \
            > "$run.log" 2>&1
      done
    done
    $PY benchmarks/time_to_accuracy.py "${RUNS[@]}" --target 0.91 --budget 60 --out "$OUT/time_to_accuracy.md" --overwrite
    step "eager step time" 40 90 $PY benchmarks/bench_train_cpu.py $BENCH --attention ${BENCH_MODELS:-none sa se eca} \
        --channels-last ${BENCH_LAYOUTS:-both} --out "$OUT/step_time_eager.md" $OVERWRITE 2> "$OUT/step_time_eager.log"
    echo "[$SECONDS s] fast stage done in $OUT" >&2
    if (( ${#NOTES[@]} )); then printf '  %s\n' "${NOTES[@]}" >&2; else echo "  every step ran to its end" >&2; fi
    { echo "# fast stage: steps skipped, cut short or failed"; echo; printf -- '- %s\n' "${NOTES[@]:-none}"; } > "$OUT/notes.md" ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
