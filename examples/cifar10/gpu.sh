#!/usr/bin/env bash
# CIFAR-10 on one GPU: supernet -> search under an energy constraint -> retrain (ShiftAddNAS vision side).
# Usage: bash examples/cifar10/gpu.sh CIFAR_DIR [WORK]
#   CIFAR_DIR: the extracted cifar-10-batches-py directory (data_batch_1..5, test_batch; python pickles).
# Written without a GPU: never run. Every stage resumes from its --save-dir when restarted.
set -euo pipefail
CIFAR_DIR=${1:?usage: gpu.sh CIFAR_DIR [WORK]}
WORK=${2:-work/cifar10}
SEED=${SEED:-1}
COMMON=(--dataset cifar --data-dir "$CIFAR_DIR" --device "${DEVICE:-cuda}" --seed "$SEED")
TRAIN=(--batch-size 128 --lr 1e-3 --weight-decay 0.05 --warmup-epochs 5 --label-smoothing 0.1
       --augment-shift 4 --augment-flip)
VISION="python -m fairseq_shiftadd.vision.cli"

# 1. supernet: heterogeneous sharing, one sampled subnet per update plus the sandwich rule
$VISION train --space cifar "${COMMON[@]}" "${TRAIN[@]}" --epochs "${SUPERNET_EPOCHS:-100}" --sandwich \
    --sharing heterogeneous --save-dir "$WORK/supernet"

# 2. search: population 50 = 10 parents + 25 mutations + 25 crossovers, 20 generations (the original's),
#    under at most 60 % of the energy of the same architecture built from conv blocks and an absolute bound
$VISION search "${COMMON[@]}" --supernet "$WORK/supernet/checkpoint_last.pt" --save-dir "$WORK/search" \
    --population 50 --parents 10 --mutations 25 --crossovers 25 --generations 20 \
    --constraint "conv_energy_ratio<=0.6" --constraint "energy_mj<=${MAX_ENERGY_MJ:-3.0}"

# 3. retrain the winner from scratch; results.json holds the test accuracy of the best-validation epoch
$VISION retrain --space cifar "${COMMON[@]}" "${TRAIN[@]}" --epochs "${RETRAIN_EPOCHS:-200}" \
    --subnet "$WORK/search/best.yaml" --save-dir "$WORK/retrain"
cat "$WORK/retrain/results.json"
