"""`retina-tfx run`: the pipeline on this machine, with progress on the terminal, then a summary of
its artifacts, the release decision and the report."""
import dataclasses
import datetime
import hashlib
import logging
import os
import shutil
import sys
from typing import Dict, List, Optional

from tfx.utils import path_utils

from cli import console, history, predict, report, status
from components.fundus_example_gen import files, layouts
from models import patches, serving, transform
from pipeline import configs, local_runner


def profile_of(args) -> configs.Profile:
  """The chosen profile with the training stream's shares and release gate options the command
  line overrides."""
  profile = configs.PROFILES[args.profile]
  overrides = {k: v for k, v in (('min_auc', args.min_auc), ('max_auc_drop', args.max_auc_drop))
               if v is not None}
  if args.dataset_share:
    overrides['training'] = dataclasses.replace(profile.training,
                                                dataset_shares=tuple(args.dataset_share))
  return dataclasses.replace(profile, **overrides)


def base_model_of(args, pipeline_root: str) -> Optional[str]:
  """--base-model as the pipeline takes it: latest-blessed, or the model the Importer registers: the
  SavedModel it names (shipped: the project's; a serving folder: its latest version), staged."""
  if args.base_model in (None, configs.LATEST_BLESSED):
    return args.base_model
  path = configs.SHIPPED_MODEL_DIR if args.base_model == configs.SHIPPED else args.base_model
  return stage_base_model(predict.resolve_saved_model(path), pipeline_root)


def stage_base_model(saved_model: str, pipeline_root: str) -> str:
  """A copy of `saved_model` laid out as a Trainer's model (<folder>/Format-Serving), the layout in
  which TFX's Evaluator reads it as the baseline. The folder is named after the content, so the same
  model is imported once, however often it is named, and a changed one is a new artifact."""
  digest = hashlib.sha256()
  for folder, subfolders, names in os.walk(saved_model):
    subfolders.sort()
    for name in sorted(names):
      path = os.path.join(folder, name)
      digest.update(os.path.relpath(path, saved_model).encode())
      with open(path, 'rb') as content:
        digest.update(content.read())
  staged = os.path.join(os.path.abspath(pipeline_root), configs.BASE_MODEL_DIR,
                        digest.hexdigest()[:16])
  if not os.path.exists(staged):
    partial = staged + '.partial'   # a copy cut short is never taken for the model
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(saved_model, path_utils.serving_model_dir(partial))
    os.rename(partial, staged)
  return staged


def base_statistics_of(base_model: str, pipeline_root: str) -> Optional[Dict[str, float]]:
  """The transform statistics of the base model (base_model_of's answer), which this run's
  Transform keeps (it reads them itself when it runs: components/transform/executor.py). None: none
  blessed yet (latest-blessed), or a model exported before they were recorded; Transform then
  analyses this run's training images. Read here too to show them, and to stop a run whose base
  model holds a broken statistics file before it starts."""
  if base_model == configs.LATEST_BLESSED:
    store_path = configs.metadata_path(pipeline_root)
    blessed = [d for d in history.decisions(history.open_store(pipeline_root)) if d.blessed
               ] if os.path.exists(store_path) else []
    if not blessed:
      return None
    # The model TFX's LatestBlessedModelStrategy resolves: the blessed one created last.
    saved_model = path_utils.serving_model_path(max(blessed, key=lambda d: d.model_id).model_uri)
  else:
    saved_model = path_utils.serving_model_dir(base_model)
  try:
    return serving.read_transform_statistics(saved_model)
  except ValueError as error:
    raise console.CommandError(str(error)) from error


def _describe_statistics(statistics: Optional[Dict[str, float]]) -> str:
  if statistics is None:
    return "analysed from this run's training images (none recorded with a base model)"
  return ("the base model's: FOV width {:.0f} px, FOV gray mean {:.1f}, std {:.1f}".format(
      *(statistics[key] for key in transform.STATISTICS_KEYS)))


def _check_dataset_shares(args) -> None:
  """--dataset-share against the datasets --data holds: a name none has, or shares that leave
  nothing to a dataset not named, stop the run now instead of the Trainer after ingestion,
  Transform and PatchGen. Bad input is left to ExampleGen, which names it as on any run."""
  if not args.dataset_share:
    return
  try:
    datasets = sorted({record.dataset for record in layouts.list_datasets(args.data)})
  except files.FundusInputError:
    return
  try:
    patches.stream_shares([name.encode() for name in datasets], dict(args.dataset_share))
  except ValueError as error:
    raise console.CommandError(f'--dataset-share: {error}') from None


def run_pipeline(args, pipeline_root: str, serving_dir: str) -> Optional[List[history.NodeRun]]:
  """Runs the pipeline with progress on the terminal, then lists the artifacts; returns MLMD's
  node runs, or None on failure (said on stderr, with the log's path). cli.main holds the root's
  run lock (cli/run_lock.py)."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  log_path = os.path.join(os.path.abspath(pipeline_root), configs.LOG_DIR, f'run-{stamp}.log')
  _check_dataset_shares(args)
  base_model = base_model_of(args, pipeline_root)
  print(f'retina-tfx: running pipeline on {", ".join(args.data)} (profile {args.profile})\n'
        f'  pipeline root: {os.path.abspath(pipeline_root)}\n  full log: {log_path}')
  if base_model:
    print(f'  base model: {args.base_model}' + ('' if base_model == args.base_model
                                               else f' (imported as {base_model})'))
    print('  transform statistics: '
          f'{_describe_statistics(base_statistics_of(base_model, pipeline_root))}')
  interrupted = (history.interrupted_executions(history.open_store(pipeline_root), configs.TRAINER)
                 if os.path.exists(configs.metadata_path(pipeline_root)) else [])
  if interrupted:
    print(f'  interrupted training found (Trainer execution {", ".join(map(str, interrupted))}): '
          'the Trainer resumes it if its settings and inputs are unchanged')
  with console.logging_to_file(log_path) as progress:
    try:
      local_runner.run(args.data, pipeline_root, profile_of(args), serving_dir,
                       interrupted_trainer_runs=interrupted, base_model=base_model,
                       beam_pipeline_args=args.beam_args,
                       eval_count=args.eval_count, split_seed=args.split_seed,
                       enable_cache=not args.no_cache, until=getattr(args, 'until', None))
    except Exception as error:  # pylint: disable=broad-except
      logging.exception('pipeline failed')
      where = f'{progress.current} failed: ' if progress.current else ''
      print(f'retina-tfx: error: {where}{console.user_message(error)}\n  (full log: {log_path})',
            file=sys.stderr)
      return None
  runs = history.latest_node_runs(history.open_store(pipeline_root))
  print('artifacts:')
  for run in runs:
    for key, uris in run.outputs.items():
      for uri in uris:
        print(f'  {run.node_id:<{console.NAME_WIDTH}} {run.state:<9} {key:<18} {uri}')
  return runs


def command(args) -> int:
  serving_dir = args.serving_dir or os.path.join(
      os.path.dirname(os.path.abspath(args.pipeline_root)), configs.SERVING_DIR)
  if run_pipeline(args, args.pipeline_root, serving_dir) is None:
    return 1
  if args.until:
    return 0
  status.print_latest_decision(args.pipeline_root)
  report_dir = os.path.join(args.pipeline_root, configs.REPORT_DIR)
  print(f'report: {report.write_report(args.pipeline_root, report_dir)}')
  return 0
