"""`retina-tfx evaluate`: an exported model on other datasets' test images (or all their images),
scored with the release gate's own metrics (models.vessel_metrics), per dataset and pooled; a
table on the terminal, evaluation.json and an HTML page with curves and overlays."""
import html
import json
import os
import sys
from typing import Dict, List, Tuple

import numpy as np

from cli import console, predict, visualize
from components.fundus_example_gen import files, layouts, source
from models import constants, vessel_metrics

_COLUMNS = ((vessel_metrics.AUC, 'AUC'), (vessel_metrics.AUC_PR, 'AUC-PR'),
            (vessel_metrics.ACCURACY, 'Acc'), (vessel_metrics.RECALL, 'Se'),
            (vessel_metrics.SPECIFICITY, 'Sp'), (vessel_metrics.F1, 'F1'))
POOLED = 'all datasets'


def evaluate(model: predict.VesselModel, records: List[layouts.FundusRecord], output_dir: str
             ) -> Tuple[Dict[str, Dict], Dict[str, float], List[str]]:
  """Scores every record's map inside its FOV; writes an error overlay per image. Returns per
  dataset (and pooled, with several) the image count, metrics and accumulator, the AUC of every
  image ('dataset/id'), and one line per record whose files were refused (the others are scored)."""
  totals: Dict[str, np.ndarray] = {}
  per_image: Dict[str, float] = {}
  counts: Dict[str, int] = {}
  problems = []
  for done, record in enumerate(records, 1):
    image_key = _image_key(record)
    try:
      decoded = source.decode_record(record)
    except files.FundusInputError as error:
      problems.append(error.message)
    else:
      accumulator = _score(model, decoded, os.path.join(output_dir, _overlay_name(record)))
      for name in (record.dataset, POOLED):
        total = totals.setdefault(name, vessel_metrics.empty_histograms())
        vessel_metrics.merge(total, accumulator)
        counts[name] = counts.get(name, 0) + 1
      per_image[image_key] = vessel_metrics.scores(accumulator)[vessel_metrics.AUC]
    console.progress_bar(done, len(records), image_key)
  names = sorted(totals.keys() - {POOLED}) + ([POOLED] if len(totals) > 2 else [])
  results = {name: {'images': counts[name], 'metrics': vessel_metrics.scores(totals[name]),
                    'accumulator': totals[name]}
             for name in names}
  return results, per_image, problems


def _score(model: predict.VesselModel, decoded: Dict[str, np.ndarray], overlay_path: str
           ) -> np.ndarray:
  """One decoded record's accumulator; writes its error overlay."""
  fov = decoded[constants.FOV_KEY]
  # The dataset's FOV (published, or computed as ingestion computes it) is the model's too.
  probabilities, _ = model.predict_pixels(decoded[constants.IMAGE_KEY], fov)
  label, inside = decoded[constants.LABEL_KEY] > 127, fov > 127
  vessels = probabilities >= vessel_metrics.DECISION_THRESHOLD
  visualize.write_png(overlay_path, visualize.error_overlay(
      decoded[constants.IMAGE_KEY], vessels & inside, label & inside))
  return vessel_metrics.histograms(label, probabilities, inside)


def _image_key(record: layouts.FundusRecord) -> str:
  return f'{record.dataset}/{record.image_id}'


def _overlay_name(record: layouts.FundusRecord) -> str:
  return f'overlay_{record.dataset}_{record.image_id}.png'


def format_table(results: Dict[str, Dict]) -> str:
  header = f'{"dataset":<16} {"images":>6} ' + ' '.join(f'{title:>7}' for _, title in _COLUMNS)
  lines = [header, '-' * len(header)]
  for name, result in results.items():
    values = ' '.join(f'{result["metrics"][key]:>7.4f}' for key, _ in _COLUMNS)
    lines.append(f'{name:<16} {result["images"]:>6} {values}')
  lines.append('per pixel inside each image\'s FOV, against the first observer; Acc, Se, Sp, F1 at '
               f'{vessel_metrics.DECISION_THRESHOLD}')
  return '\n'.join(lines)


def _write_html(results: Dict[str, Dict], per_image: Dict[str, float], records, model_path: str,
                output_dir: str) -> str:
  sections = []
  for index, (name, result) in enumerate(results.items()):
    curves_file = f'curves_{index}.png'
    matrices = vessel_metrics.confusion_matrices(result['accumulator']).matrices
    curve = {key: np.array([getattr(m, key) for m in matrices])
             for key in ('false_positive_rate', 'recall', 'precision')}
    visualize.write_curves(os.path.join(output_dir, curves_file), curve['false_positive_rate'],
                           curve['recall'], curve['precision'],
                           result['metrics'][vessel_metrics.AUC],
                           result['metrics'][vessel_metrics.AUC_PR])
    sections.append(f'<h2>{html.escape(name)}</h2><img src="{curves_file}">')
  cells = ''.join(f'<th>{title}</th>' for _, title in _COLUMNS)
  rows = ''.join(f'<tr><td>{html.escape(name)}</td><td>{r["images"]}</td>'
                 + ''.join(f'<td>{r["metrics"][key]:.4f}</td>' for key, _ in _COLUMNS) + '</tr>'
                 for name, r in results.items())
  gallery = ''.join(visualize.overlay_figure(
      _overlay_name(r), f'{r.dataset} {r.image_id}: AUC {per_image[_image_key(r)]:.4f}')
      for r in records)
  page = visualize.html_page('retina-tfx evaluate', f'''<h1>Model on other datasets</h1>
<p>Model <code>{html.escape(model_path)}</code>. Per pixel inside each image's FOV against the
first observer; Acc, Se, Sp, F1 at {vessel_metrics.DECISION_THRESHOLD}.</p>
<table><tr><th>dataset</th><th>images</th>{cells}</tr>{rows}</table>
{''.join(sections)}
<h2>Prediction vs ground truth</h2>
{visualize.ERROR_LEGEND_HTML}
{gallery}''')
  path = os.path.join(output_dir, 'index.html')
  with open(path, 'w') as f:
    f.write(page)
  return path


def command(args) -> int:
  try:
    records = layouts.list_datasets(args.data)
  except files.FundusInputError as error:
    raise console.CommandError(error.message) from error
  if not args.all:
    records = [r for r in records if r.split == layouts.TEST]
  model = predict.VesselModel(args.model)
  print(f'retina-tfx: evaluating {model.path} on {len(records)} images of '
        f'{", ".join(sorted({r.dataset for r in records}))}'
        + ('' if args.all else ' (test splits; --all for every image)'))
  os.makedirs(args.output, exist_ok=True)
  results, per_image, problems = evaluate(model, records, args.output)
  if results:
    print(format_table(results))
    with open(os.path.join(args.output, 'evaluation.json'), 'w') as f:
      json.dump({'command': 'retina-tfx ' + ' '.join(args.argv), 'model': model.path,
                 'all_images': args.all,
                 'datasets': {name: {k: v for k, v in r.items() if k != 'accumulator'}
                              for name, r in results.items()},
                 'per_image_auc': per_image, 'refused_files': problems}, f, indent=2)
    scored = [r for r in records if _image_key(r) in per_image]
    print(f'report: {_write_html(results, per_image, scored, model.path, args.output)}')
  for problem in problems:
    print(f'retina-tfx: error: {problem}', file=sys.stderr)
  return 1 if problems else 0
