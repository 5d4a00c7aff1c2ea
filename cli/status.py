"""`retina-tfx status`: the release history as a table a person reads in a minute, and the one
rendering of a release decision that the run summary, the table and the report share."""
import dataclasses
import json
from typing import List, Optional

from cli import console, history
from models import vessel_metrics

# Columns of the table, by metric name (all per FOV pixel, on the test split).
METRIC_COLUMNS = ((vessel_metrics.AUC, 'AUC'), (vessel_metrics.AUC_PR, 'AUC-PR'),
                  (vessel_metrics.ACCURACY, 'Acc'), (vessel_metrics.RECALL, 'Se'),
                  (vessel_metrics.SPECIFICITY, 'Sp'), (vessel_metrics.F1, 'F1'))


def verdict(decision: history.Decision) -> str:
  """One line: the model, BLESSED or REJECTED, its gated AUC and where it went."""
  auc = decision.metrics.get(vessel_metrics.AUC, float('nan'))
  if not decision.blessed:
    return f'model {decision.model_id} REJECTED (test FOV AUC {auc:.4f}), not pushed'
  where = (f'pushed as version {decision.pushed_version} to {decision.pushed_to}'
           if decision.pushed_version else 'not pushed')
  return f'model {decision.model_id} BLESSED (test FOV AUC {auc:.4f}); {where}'


def format_table(rows: List[history.Decision]) -> str:
  """One line per evaluation, with the reasons under each rejected model."""
  if not rows:
    return 'no evaluations recorded yet: run the pipeline first'
  header = (f'{"run":<28} {"model":>5} {"vs":>5} {"parent":>6} '
            + ' '.join(f'{title:>7}' for _, title in METRIC_COLUMNS)
            + f' {"ΔAUC":>8}  {"decision":<11} pushed version')
  lines = [header, '-' * len(header)]
  for row in rows:
    values = ' '.join(f'{row.metrics[key]:>7.4f}' if key in row.metrics else f'{"-":>7}'
                      for key, _ in METRIC_COLUMNS)
    change = f'{row.auc_change:+8.4f}' if row.auc_change is not None else f'{"-":>8}'
    baseline = str(row.baseline_model_id) if row.baseline_model_id is not None else '-'
    parent = str(row.parent_model_id) if row.parent_model_id is not None else '-'
    decision = 'BLESSED' if row.blessed else 'REJECTED'
    cached = ' (cached)' if row.state == 'CACHED' else ''
    lines.append(f'{row.run_id:<28} {row.model_id:>5} {baseline:>5} {parent:>6} {values} {change}  '
                 f'{decision:<11} {row.pushed_version or "-"}{cached}')
    if len(row.per_dataset_auc) > 1:
      lines.append('    AUC per dataset: ' + ', '.join(
          f'{name} {auc:.4f}' for name, auc in row.per_dataset_auc.items()))
    lines += [f'    why: {reason}' for reason in row.reasons]
  lines.append('metrics: per pixel inside the FOV on the test split (TFMA); '
               '"vs": the model it was compared with (the latest blessed, or the imported base);\n'
               '"parent": the base model its training started from (run --base-model)')
  return '\n'.join(lines)


def print_latest_decision(pipeline_root: str) -> None:
  """The run summary's last lines: the latest release decision and why."""
  rows = history.decisions(history.open_store(pipeline_root))
  if rows:
    print(f'release gate: {verdict(rows[-1])}' + (':' if rows[-1].reasons else ''))
    for reason in rows[-1].reasons:
      print(f'  - {reason}')


class NotBlessed(console.CommandError):
  """`status --require-blessed`: the latest run did not bless a model."""


def blessed_verdict(rows: List[history.Decision], latest_run: Optional[str]) -> str:
  """The verdict line of the latest run's model if it was blessed; else raises NotBlessed saying
  why, in one line. An older run's blessing does not count: the latest run may have failed."""
  if latest_run is None:
    raise NotBlessed('no pipeline runs recorded yet')
  decided = [row for row in rows if row.run_id == latest_run]
  if not decided:
    raise NotBlessed(f'the latest run, {latest_run}, made no release decision (it stopped '
                     'before the Evaluator, or is still running)')
  line = f'run {latest_run}: {verdict(decided[-1])}'
  if not decided[-1].blessed:
    reasons = '; '.join(decided[-1].reasons)
    raise NotBlessed(f'{line}: {reasons}' if reasons else line)
  return line


def command(args) -> int:
  store = history.open_store(args.pipeline_root)
  rows = history.decisions(store)
  if args.require_blessed:
    print(blessed_verdict(rows, history.latest_run_id(store)))
  else:
    print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2) if args.json
          else format_table(rows))
  return 0
