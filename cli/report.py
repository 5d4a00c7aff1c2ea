"""`retina-tfx report`: one HTML page per evaluation that a person reads in a minute.

Everything on it comes from what the run recorded: the numbers and the curves from the Evaluator's
TFMA output, the overlays from the evaluated model applied to the same test examples, the
preprocessing strip from the run's own Transform output and settings.
"""
import html
import json
import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.utils import path_utils

from cli import console, history, predict, status, visualize
from models import constants, settings, vessel_metrics

INDEX_FILE = 'index.html'


class ReportError(console.CommandError):
  pass


def _pick(rows: List[history.Decision], run: str) -> history.Decision:
  if not rows:
    raise ReportError('no evaluations recorded yet: run the pipeline first')
  if run == 'latest':
    return rows[-1]
  matching = [row for row in rows if row.run_id == run]
  if not matching:
    raise ReportError(f"no evaluation in run '{run}'; runs: {', '.join(r.run_id for r in rows)}")
  return matching[-1]


def _curves(evaluation_uri: str) -> Dict[str, np.ndarray]:
  """FPR, TPR (recall) and precision over TFMA's thresholds for the evaluated model, overall."""
  for plots in tfma.load_plots(evaluation_uri):
    if plots.slice_key.single_slice_keys:
      continue
    for entry in plots.plot_keys_and_values:
      if entry.key.name == vessel_metrics.CURVES and entry.key.model_name in history.CANDIDATE:
        matrices = entry.value.confusion_matrix_at_thresholds.matrices
        return {name: np.array([getattr(m, name) for m in matrices])
                for name in ('false_positive_rate', 'recall', 'precision')}
  raise ReportError(f'{evaluation_uri}: no confusion matrix plot (evaluated with another config?)')


def _test_examples(examples_uri: str):
  pattern = os.path.join(examples_uri, f'Split-{constants.TEST_SPLIT}', '*')
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP'):
    features = tf.train.Example.FromString(record.numpy()).features.feature
    yield {key: features[key].bytes_list.value[0]
           for key in (constants.IMAGE_ID_KEY, constants.IMAGE_KEY, constants.LABEL_KEY,
                       constants.FOV_KEY)}


def _decode(png: bytes, channels: int) -> np.ndarray:
  return tf.io.decode_png(png, channels=channels).numpy()


def _overlays(model_uri: str, examples_uri: str, out_dir: str) -> List[Tuple[str, str]]:
  """Prediction vs ground truth for every test image: (image id, PNG file name)."""
  model = predict.VesselModel(path_utils.serving_model_path(model_uri))
  written = []
  for example in _test_examples(examples_uri):
    probabilities, _ = model.predict(example[constants.IMAGE_KEY], example[constants.FOV_KEY])
    vessels = probabilities >= vessel_metrics.DECISION_THRESHOLD
    rgb = _decode(example[constants.IMAGE_KEY], 3)
    label = _decode(example[constants.LABEL_KEY], 1)[..., 0] > 127
    fov = _decode(example[constants.FOV_KEY], 1)[..., 0] > 127
    image_id = example[constants.IMAGE_ID_KEY].decode()
    name = f'overlay_{image_id}.png'
    visualize.write_png(os.path.join(out_dir, name),
                        visualize.error_overlay(rgb, vessels & fov, label & fov))
    written.append((image_id, name))
  return sorted(written)


def _preprocessing_strip(store, model_id: int, examples_uri: str, out_dir: str) -> str:
  """The first test image through the run's own preprocessing (settings and dataset statistics)."""
  transform_graph = history.producer(store, model_id)[1]['transform_graph']
  transform = history.producer(store, transform_graph.id)[0]
  custom_config = json.loads(transform.custom_properties['custom_config'].string_value or '{}')
  config = settings.PreprocessingConfig.from_custom_config(custom_config)
  example = next(_test_examples(examples_uri))
  rgb = _decode(example[constants.IMAGE_KEY], 3)
  fov = (_decode(example[constants.FOV_KEY], 1)[..., 0] > 127).astype(np.float32)
  name = 'preprocessing.png'
  visualize.write_png(os.path.join(out_dir, name), visualize.preprocessing_figure(
      rgb, fov, f'test image {example[constants.IMAGE_ID_KEY].decode()}', 'the dataset mask', config,
      transform_graph.uri))
  return name


def _metric_table(decision: history.Decision) -> str:
  cells = ''.join(f'<th>{title}</th>' for _, title in status.METRIC_COLUMNS)
  values = ''.join(f'<td>{decision.metrics[key]:.4f}</td>' if key in decision.metrics else '<td>-</td>'
                   for key, _ in status.METRIC_COLUMNS)
  return f'<table><tr>{cells}</tr><tr>{values}</tr></table>'


def _decision_html(decision: history.Decision) -> str:
  verdict = html.escape(status.verdict(decision)).replace(
      'BLESSED', '<span class="ok">BLESSED</span>').replace(
      'REJECTED', '<span class="bad">REJECTED</span>')
  if decision.reasons:
    verdict += ':<ul>' + ''.join(f'<li>{html.escape(r)}</li>' for r in decision.reasons) + '</ul>'
  baseline_kind = ('its base model' if decision.baseline_model_id == decision.parent_model_id
                   else 'blessed model')
  baseline = (f'compared with {baseline_kind} {decision.baseline_model_id}'
              + (f' (AUC change {decision.auc_change:+.4f})' if decision.auc_change is not None else '')
              if decision.baseline_model_id is not None else 'no blessed model before it: '
              'judged by the absolute AUC bound alone')
  parent = (f'trained from the weights of base model {decision.parent_model_id} '
            f'(<code>{html.escape(decision.parent_model_uri)}</code>)'
            if decision.parent_model_id is not None else 'trained from scratch (no base model)')
  return f'<p>Decision: {verdict}</p><p>{baseline}</p><p>Parent: {parent}</p>'


def write_report(pipeline_root: str, output_dir: str, run: str = 'latest') -> str:
  """Writes `output_dir`/index.html and its PNGs for one run's evaluation; returns the HTML path."""
  store = history.open_store(pipeline_root)
  decision = _pick(history.decisions(store), run)
  os.makedirs(output_dir, exist_ok=True)
  curves = _curves(decision.evaluation_uri)
  auc, auc_pr = (decision.metrics.get(name, float('nan'))
                 for name in (vessel_metrics.AUC, vessel_metrics.AUC_PR))
  visualize.write_curves(os.path.join(output_dir, 'curves.png'), curves['false_positive_rate'],
                         curves['recall'], curves['precision'], auc, auc_pr)
  overlays = _overlays(decision.model_uri, decision.examples_uri, output_dir)
  strip = _preprocessing_strip(store, decision.model_id, decision.examples_uri, output_dir)
  per_dataset = ''.join(f'<tr><td>{html.escape(name)}</td><td>{value:.4f}</td></tr>'
                        for name, value in decision.per_dataset_auc.items())
  per_image = ''.join(f'<tr><td>{html.escape(image_id)}</td><td>{value:.4f}</td></tr>'
                      for image_id, value in sorted(decision.per_image_auc.items(),
                                                    key=lambda item: item[1]))
  gallery = ''.join(visualize.overlay_figure(
      name, f'{i}: AUC {decision.per_image_auc.get(i, float("nan")):.4f}') for i, name in overlays)
  page = visualize.html_page(f'retina-tfx run {decision.run_id}', f'''
<h1>Vessel model {decision.model_id}: release gate report</h1>
<p>Run <code>{html.escape(decision.run_id)}</code>, evaluated {decision.evaluated_at}
({decision.state.lower()}). Model <code>{html.escape(decision.model_uri)}</code>.</p>
{_decision_html(decision)}
<h2>Test split, per pixel inside the FOV (TFMA)</h2>
{_metric_table(decision)}
<p>Acc, Se (recall), Sp and F1 at probability {vessel_metrics.DECISION_THRESHOLD}.
The gate reads the AUC only.</p>
<img src="curves.png">
<h2>AUC per dataset (the gate reads all test pixels pooled)</h2>
<table><tr><th>dataset</th><th>AUC</th></tr>{per_dataset}</table>
<h2>AUC per test image (worst first)</h2>
<table><tr><th>image</th><th>AUC</th></tr>{per_image}</table>
<h2>Prediction vs ground truth at {vessel_metrics.DECISION_THRESHOLD}</h2>
{visualize.ERROR_LEGEND_HTML}
{gallery}
<h2>Preprocessing (in the model's graph), for one test image</h2>
<img src="{strip}" width="1200">''')
  path = os.path.join(output_dir, INDEX_FILE)
  with open(path, 'w') as f:
    f.write(page)
  return path


def command(args) -> int:
  print(f'report: {write_report(args.pipeline_root, args.output, args.run)}')
  return 0
