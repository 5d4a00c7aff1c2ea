"""`retina-tfx benchmark`: the whole pipeline on DRIVE, then the exported model on the test images.

Scores pool every FOV pixel of the official test images against 1st_manual (sklearn's metrics).
"""
import datetime
import json
import os
import platform
import time
from typing import Dict, Sequence

import numpy as np
from sklearn import metrics
from tfx.utils import path_utils

from cli import console, history, predict, run, status
from components.fundus_example_gen import files, layouts, source
from models import constants, training, vessel_metrics
from pipeline import configs

BENCHMARK_TABLE_HEADER = '## Vessel model on the DRIVE test set (`retina-tfx benchmark`)'
_COLUMNS = ('date', 'command', 'profile / model', 'training wall time', 'AUC-ROC', 'AUC-PR', 'Acc',
            'Se', 'Sp', 'F1', 'predict s/image')


# Scores are counted per (label, level) with each probability at the 65,536 levels of predict's
# png16 maps (the float maps' AUC to ~1e-5, tests/test_predict.py), and scikit-learn scores the
# counts as sample weights: a fixed 1 MB however many pixels. As arrays, the 165 M FOV pixels of
# the four datasets' test photos took 10 GB in scikit-learn.
_LEVELS = np.iinfo(np.uint16).max + 1


def score_test_images(model: predict.VesselModel, data_paths: Sequence[str]) -> Dict[str, float]:
  """Pooled FOV-pixel scores of `model` on the test images of the datasets at `data_paths`."""
  records = [r for r in layouts.list_datasets(data_paths) if r.split == layouts.TEST]
  counts, seconds = np.zeros(2 * _LEVELS, np.int64), []
  for done, record in enumerate(records, 1):
    decoded = source.decode_record(record)
    png = files.encode_png(decoded[constants.IMAGE_KEY])
    started = time.monotonic()
    probabilities, _ = model.predict(png)
    seconds.append(time.monotonic() - started)
    inside = decoded[constants.FOV_KEY] > 0
    levels = np.round(probabilities[inside] * (_LEVELS - 1)).astype(np.int64)
    vessel = decoded[constants.LABEL_KEY][inside] > 0
    counts += np.bincount(levels + _LEVELS * vessel, minlength=2 * _LEVELS)
    console.progress_bar(done, len(records), f'scoring {record.image.rel_path}')
  present = np.flatnonzero(counts)
  y_true, weight = present >= _LEVELS, counts[present]
  y_score = (present % _LEVELS) / (_LEVELS - 1)
  y_pred = y_score >= 0.5
  return {
      'images': len(records),
      'fov_pixels': int(counts.sum()),
      'auc_roc': float(metrics.roc_auc_score(y_true, y_score, sample_weight=weight)),
      'auc_pr': float(metrics.average_precision_score(y_true, y_score, sample_weight=weight)),
      'accuracy': float(metrics.accuracy_score(y_true, y_pred, sample_weight=weight)),
      'sensitivity': float(metrics.recall_score(y_true, y_pred, sample_weight=weight)),
      'specificity': float(metrics.recall_score(y_true, y_pred, pos_label=False,
                                                sample_weight=weight)),
      'f1': float(metrics.f1_score(y_true, y_pred, sample_weight=weight)),
      # The first call also traces the graph: report it apart from the steady state.
      'predict_seconds_first': seconds[0],
      'predict_seconds_per_image': float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
  }


# CPU flags that set TensorFlow's speed on a CPU, named as the benchmarks name them.
_EXTENSIONS = (('avx2', 'AVX2'), ('avx512f', 'AVX-512'), ('avx512_bf16', 'AVX-512 bfloat16'),
               ('amx_tile', 'AMX'))


def machine() -> str:
  """What a measurement ran on: CPU model and extensions, cores, memory, host name."""
  model, flags = platform.processor() or 'unknown CPU', set()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      fields = dict(line.split(':', 1) for line in f.read().split('\n\n')[0].splitlines()
                    if ':' in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    model, flags = fields.get('model name', model), set(fields.get('flags', '').split())
  extensions = ', '.join(name for flag, name in _EXTENSIONS if flag in flags) or 'no AVX2'
  memory_gb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9
  return (f'{model} ({extensions}), {os.cpu_count()} cores, {memory_gb:.0f} GB, '
          f'host {platform.node() or "unnamed"}')


def append_row(benchmarks_file: str, result: Dict) -> None:
  scores = result['scores']
  row = (datetime.date.today().isoformat(), f'`{result["command"]}`',
         f'{result["profile"]} / {result["architecture"]} ({result["parameters"]:,} params)',
         f'{result["training_seconds"] / 60:.1f} min', f'{scores["auc_roc"]:.4f}',
         f'{scores["auc_pr"]:.4f}', f'{scores["accuracy"]:.4f}', f'{scores["sensitivity"]:.4f}',
         f'{scores["specificity"]:.4f}', f'{scores["f1"]:.4f}',
         f'{scores["predict_seconds_per_image"]:.2f}')
  with open(benchmarks_file, 'a+') as f:
    f.seek(0)
    if BENCHMARK_TABLE_HEADER not in f.read():
      f.write(f'\n{BENCHMARK_TABLE_HEADER}\n\nMachine: {machine()}, no GPU unless stated. Scores '
              'pool all FOV pixels of the test images against 1st_manual; Acc/Se/Sp/F1 at 0.5.\n\n'
              f'| {" | ".join(_COLUMNS)} |\n|{"---|" * len(_COLUMNS)}\n')
    f.write(f'| {" | ".join(row)} |\n')


def write_result(output_dir: str, result: Dict) -> str:
  path = os.path.join(output_dir, 'benchmark.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  return path


def command(args) -> int:
  """Runs in args.pipeline_root (<output>/pipeline_root), whose lock cli.main holds."""
  pipeline_root = args.pipeline_root
  runs = run.run_pipeline(args, pipeline_root, os.path.join(args.output, configs.SERVING_DIR))
  if runs is None:
    return 1
  trainer = next(r for r in runs if r.node_id == configs.TRAINER)
  summary = training.read_summary(trainer.outputs['model_run'][0])
  # The Trainer's own export is scored, blessed or not; the Pusher put it in serving_dir if blessed.
  model_dir = path_utils.serving_model_path(trainer.outputs['model'][0])
  print(f'retina-tfx: scoring {model_dir} on the test images')
  scores = score_test_images(predict.VesselModel(model_dir), args.data)
  gate = history.decisions(history.open_store(pipeline_root))[-1]
  result = {
      'command': 'retina-tfx ' + ' '.join(args.argv),
      'profile': args.profile,
      'architecture': summary['config']['training']['model']['architecture'],
      'parameters': summary['parameters'], 'training_seconds': summary['training_seconds'],
      'model': model_dir, 'scores': scores,
      'evaluator': {'auc': gate.metrics.get(vessel_metrics.AUC), 'blessed': gate.blessed,
                    'reasons': gate.reasons, 'pushed_version': gate.pushed_version,
                    'pushed_to': gate.pushed_to},
  }
  path = write_result(args.output, result)
  append_row(args.benchmarks_file, result)
  print(f'  training wall time  {summary["training_seconds"] / 60:.1f} min')
  for key in ('auc_roc', 'auc_pr', 'accuracy', 'sensitivity', 'specificity', 'f1',
              'predict_seconds_per_image'):
    print(f'  {key:<19} {scores[key]:.4f}')
  print(f'  Evaluator (TFMA): {status.verdict(gate)}')
  print(f'  scores: {path}; row appended to {args.benchmarks_file}')
  return 0
