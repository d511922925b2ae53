#!/usr/bin/env bash
# The recorded GPU runs behind docs/results/ (one H100). Usage:
#   bash benchmarks/gpu_runs.sh STAGE OUTDIR
# STAGE: env | checkpoint | bench | seeds | ablations | fast. COMPILE is added to the training commands. DATA (default .gpu/cifar10-jpeg.tar.gz) is
# the JPEG copy; EXTRA is appended to every training command (e.g. "--device cpu --limit-train 512
# --limit-test 256 --epochs 1" to try the stages on a CPU first). RECIPE is the shared recipe.
set -euo pipefail
STAGE=$1
OUT=$2
PY=${PY:-python}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
DATA=${DATA:-.gpu/cifar10-jpeg.tar.gz}
RECIPE=${RECIPE:---epochs 40 --batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta}
EXTRA=${EXTRA:-}
COMPILE=${COMPILE:-}   # e.g. "--compile reduce-overhead"
BENCH=${BENCH:---device cuda --batch-size 512 --steps 20 --rounds 5 --warmup 5}
mkdir -p "$OUT"
case $STAGE in
  env)
    { nvidia-smi || true; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"; } > "$OUT/env.txt" 2>&1 ;;
  checkpoint)
    $PY -m sa_torch.train --model resnet20 --attention sa --groups 4 --seed 0 --data "$DATA" $RECIPE $COMPILE $EXTRA \
        --quiet --out "$OUT/sa-resnet20-seed0" --export "$OUT/sa_resnet20_cifar10.pt" ;;
  bench)
    $PY benchmarks/bench_train_cpu.py $BENCH --channels-last both --out "$OUT/step_time_eager.md"
    $PY benchmarks/bench_train_cpu.py $BENCH --channels-last on --compile ${BENCH_COMPILE:-default} --out "$OUT/step_time_compiled.md" ;;
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
    # One command of at most 10 minutes on one H100/H200 (PyTorch 2.11, no internet), for the fast SA path:
    #   1. step time and images/s of plain, SA, SE, ECA ResNet-20, both layouts, eager then compiled
    #      (batch 512, bf16; the compiled table's warmup column is each model's compile time);
    #   2. time to accuracy: SA-ResNet-20 and plain with the same recipe, compiled, channels_last,
    #      seeds in TTA_SEEDS, each run limited to TTA_LIMIT s; summary against 91.0% in 60 s wall.
    # Try it on a CPU first (a few minutes), e.g.:
    #   BENCH="--device cpu --batch-size 32 --steps 1 --rounds 1 --warmup 1" BENCH_MODELS="none sa" \
    #   BENCH_LAYOUTS=on EXTRA="--device cpu --limit-train 512 --limit-test 256" TTA_EPOCHS=1 \
    #   TTA_COMPILE= bash benchmarks/gpu_runs.sh fast /tmp/fast
    # (worst case: 90 + 300 + decoding + 2 x 80 s per seed)
    MODELS=${BENCH_MODELS:-none sa se eca}
    LAYOUTS=${BENCH_LAYOUTS:-both}
    mkdir -p "$OUT/tta"
    timeout 90 $PY benchmarks/bench_train_cpu.py $BENCH --attention $MODELS --channels-last $LAYOUTS \
        --out "$OUT/step_time_eager.md" 2> "$OUT/step_time_eager.log" || echo "eager benchmark failed or timed out" >&2
    timeout 300 $PY benchmarks/bench_train_cpu.py $BENCH --attention $MODELS --channels-last $LAYOUTS \
        --compile ${BENCH_COMPILE:-reduce-overhead} --out "$OUT/step_time_compiled.md" 2> "$OUT/step_time_compiled.log" \
        || echo "compiled benchmark failed or timed out" >&2
    $PY -c "from sa_torch.train.data import load_cifar10; load_cifar10('$DATA')"   # decode and cache once, outside the clock
    TTA_RECIPE=${TTA_RECIPE:---batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta}
    RUNS=()
    for seed in ${TTA_SEEDS:-0}; do
      for attention in sa none; do
        run="$OUT/tta/$attention-seed$seed"
        RUNS+=("$run")
        timeout ${TTA_LIMIT:-80} $PY -m sa_torch.train --model resnet20 --attention $attention --groups 4 --seed $seed \
            --data "$DATA" $TTA_RECIPE --epochs ${TTA_EPOCHS:-40} --channels-last on \
            ${TTA_COMPILE---compile reduce-overhead} $EXTRA --quiet --overwrite --out "$run" > "$run.log" 2>&1 \
            || echo "$run stopped (exit $?; see $run.log)" >&2
      done
    done
    $PY benchmarks/time_to_accuracy.py "${RUNS[@]}" --target 0.91 --budget 60 --out "$OUT/time_to_accuracy.md" ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
