#!/usr/bin/env bash
# The recorded GPU runs behind docs/results/ (one H100). Usage:
#   bash benchmarks/gpu_runs.sh STAGE OUTDIR
# STAGE: env | checkpoint | bench | seeds | ablations. COMPILE is added to the training commands. DATA (default .gpu/cifar10-jpeg.tar.gz) is
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
    $PY -m sa_torch.compare --variants plain sa --seeds 0 1 2 --data "$DATA" $RECIPE $COMPILE $EXTRA --quiet \
        --source gpu-full --out "$OUT/seeds" --table "$OUT/seeds.md" --json "$OUT/seeds.json" ;;
  ablations)
    # one seed of every variant, 12 epochs, the seven runs side by side on the one GPU (images/s
    # are then not comparable with solo runs); merged into ablations.json with concurrent_runs=7
    VARIANTS="plain sa sa-no-shuffle sa-no-groupnorm sa-conv-affine se eca"
    $PY -c "from sa_torch.data import load_cifar10; load_cifar10('$DATA')"   # decode and cache once
    for v in $VARIANTS; do
      timeout 115 $PY -m sa_torch.compare --variants $v --seeds 0 --data "$DATA" ${ABLATION_RECIPE:---epochs 12 --batch-size 512 --lr 0.4 --warmup-epochs 2 --label-smoothing 0.1 --weight-decay 5e-4 --tta} \
          $EXTRA --quiet --source gpu-full --json "$OUT/$v.json" > "$OUT/$v.log" 2>&1 &
    done
    wait
    $PY -c "import json, sys; rows = [dict(json.load(open(f'$OUT/{v}.json'))[0], concurrent_runs=len(sys.argv) - 1) for v in sys.argv[1:]]; json.dump(rows, open('$OUT/ablations.json', 'w'), indent=1)" $VARIANTS ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
