#!/usr/bin/env bash
# One call on the GPU machine: correctness on CUDA, then the GPU benchmark matrix (JSON + one log).
#   bash ../shared/tools/gpu_prep.sh      # here, once: prepares .gpu/ (wheels, data, setup.sh)
#   device run, carry [".gpu"]: source .gpu/setup.sh && bash benchmarks/gpu_check.sh [--no-tests]
# Writes under $OUT (default ./gpu_out): gpu.log and one JSON per benchmark group.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; LOG=$OUT/gpu.log
DET=../shared/data/weights/yolo11n_coco_from_int8.pt
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
[ "${1:-}" = "--no-tests" ] || python3 -m pytest -q -p no:cacheprovider tests/test_color.py tests/test_detector_parity.py \
  -k "not traffic_cam and not batches_like" 2>&1 | tail -5 | tee -a "$LOG"
# Detections on CUDA from a 1080p file (the bug: 0 detections) vs the CPU on the same frames.
for dev in cuda cpu; do
  python3 -m cidstream run /tmp/in1080.mp4 --detect --no-video --device $dev --max-frames 32 --detector $DET \
    -o /tmp/det_$dev --no-progress >> "$LOG" 2>&1
  python3 -c "import json;l=[json.loads(x) for x in open('/tmp/det_$dev/detections.jsonl')];print('$dev', len(l),'frames', sum(len(x['dehazed']) for x in l)/len(l),'vehicles/frame')" 2>&1 | tee -a "$LOG"
done
B="python3 benchmarks/run_benchmarks.py --device cuda --detect --repeats 1 --out $OUT"
bench() { $B "$@" 2>&1 | tee -a "$LOG" | grep -v '^{' | grep '^|' | tail -n +3; }
bench --inputs /tmp/in1080.mp4 /tmp/in720.mp4 --models cid-lite --batches 8 16 32 --frames 240 --tag main
bench --inputs /tmp/in1080.mp4 --models dcp cid --batches 16 --frames 160 --tag models
bench --inputs /tmp/in1080.mp4 --models cid-lite --batches 16 --streams 4 16 --frames 120 --tag streams
for d in yuv420p rgb24; do bench --inputs /tmp/in1080.mp4 --models cid-lite --batches 16 --frames 240 --decode $d --tag decode-$d; done
