"""Pipeline-wide settings: names and where things go. Per-run choices come from the CLI."""
import os

PIPELINE_NAME = 'retina-tfx'
DEFAULT_PIPELINE_ROOT = 'pipeline_root'
METADATA_FILE = 'metadata.sqlite'   # ML-Metadata store of local runs, inside the pipeline root
LOG_DIR = 'logs'                    # full logs of local runs, inside the pipeline root


def metadata_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, METADATA_FILE)
