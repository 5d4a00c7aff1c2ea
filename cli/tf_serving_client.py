"""Calls a TensorFlow Serving REST endpoint serving the pushed model: one fundus image in, one
vessel probability map (8-bit PNG, same size) out.

  docker run --rm -p 8501:8501 -v "$PWD/demo/serving_model:/models/retina/" \
      -e MODEL_NAME=retina tensorflow/serving:2.16.1
  python cli/tf_serving_client.py demo/data/test/images/01_test.tif vessels.png

Uses only the standard library, numpy and Pillow, so it runs outside the pipeline's environment.
"""
import base64
import io
import json
import sys
import urllib.request

import numpy as np
from PIL import Image


def main(image_path: str, output_path: str, url: str = 'http://localhost:8501/v1/models/retina:predict'):
  buffer = io.BytesIO()
  Image.open(image_path).convert('RGB').save(buffer, format='PNG')  # TIFF is not decodable in-graph
  body = json.dumps({'signature_name': 'serving_default',
                     'instances': [{'b64': base64.b64encode(buffer.getvalue()).decode()}]})
  request = urllib.request.Request(url, body.encode(), {'Content-Type': 'application/json'})
  with urllib.request.urlopen(request) as response:
    prediction = json.load(response)['predictions'][0]
  probabilities = np.asarray(prediction['probabilities'], np.float32)
  Image.fromarray(np.round(probabilities * 255).astype(np.uint8)).save(output_path)
  print(f'{output_path}: {probabilities.shape[1]}x{probabilities.shape[0]} vessel map')


if __name__ == '__main__':
  main(*sys.argv[1:])
