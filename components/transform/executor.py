"""TFX's Transform executor with a bound on the images in one batch.

TFT hands `preprocessing_fn` batches whose size Beam tunes by elapsed time, up to 1,000 rows. With
fundus images as rows a batch's pixels, and the maps decoded and preprocessed from them, grow with
the dataset (6.1 GB of peak RSS in Transform on HRF's 22 training photos). A fixed batch of
IMAGES_PER_BATCH rows bounds them; analyzers are combiners and accumulate across batches as before.
"""
from typing import Optional

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.transform import executor as tfx_transform

# One image per batch: the graph's per-call overhead is milliseconds, an image's work a second or
# more at 2048x2048, so larger batches gain nothing and cost their pixels in memory.
IMAGES_PER_BATCH = 1


class Executor(tfx_transform.Executor):

  def _GetDesiredBatchSize(self, data_format: int, schema: schema_pb2.Schema) -> Optional[int]:
    return IMAGES_PER_BATCH
