"""`retina-tfx show-preprocessing`: every preprocessing step of one image, as one picture."""
import os

import numpy as np

from cli import console, history, predict, visualize
from models import preprocessing
from pipeline import configs


def command(args) -> int:
  rgb = predict.read_image(args.image)
  if args.fov:
    fov = (predict.read_image(args.fov, expect_binary=True) > 127).astype(np.float32)
    fov_source = args.fov
  else:
    fov = preprocessing.fov_from_image(rgb).numpy()
    fov_source = 'computed from the image'
  if fov.shape != rgb.shape[:2] or not fov.any():
    raise console.CommandError(f'{args.fov or args.image}: FOV mask is empty or its size differs '
                               'from the image')
  transform_graph = None
  if args.pipeline_root:
    transform_graph = history.latest_output(history.open_store(args.pipeline_root),
                                            configs.TRANSFORM, 'transform_graph')
    if transform_graph is None:
      raise console.CommandError(f'{args.pipeline_root}: no completed Transform run recorded')
  figure = visualize.preprocessing_figure(rgb, fov, os.path.basename(args.image), fov_source,
                                          configs.PROFILES[args.profile].preprocessing,
                                          transform_graph)
  visualize.write_png(args.output, figure)
  print(f'wrote {args.output}')
  return 0
