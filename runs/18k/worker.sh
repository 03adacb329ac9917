#!/bin/bash
# usage: worker.sh name1:config:extra ... ; trains each at 18000 steps, 1 thread, resumable
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for spec in "$@"; do
  IFS=: read -r name config extra <<< "$spec"
  out=runs/18k/$name
  if [ -f $out/done ]; then continue; fi
  resume=""; [ -f $out/last.pt ] && resume="--resume"
  echo "[$(date +%T)] start $name" >> runs/18k/log.txt
  .venv/bin/mhe train --config $config $resume --no-progress train.steps=18000 train.out_dir=$out $extra > runs/18k/$name.log 2>&1 && touch $out/done
  echo "[$(date +%T)] end $name rc=$?" >> runs/18k/log.txt
done
