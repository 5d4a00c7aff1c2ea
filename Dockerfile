# Container image for Kubeflow Pipelines / Vertex AI Pipelines tasks and Dataflow/Flink workers:
# the official TFX 1.16 image (Python 3.10, TensorFlow 2.16 and the TFX stack) plus this project.
# Build and push (README, "Deploy to Kubeflow"):
#   docker build -t REGISTRY/retina-tfx:TAG .                      # CPU
#   docker build --build-arg GPU=1 -t REGISTRY/retina-tfx:TAG-gpu .  # adds CUDA libraries for the Trainer
#   docker push REGISTRY/retina-tfx:TAG
FROM gcr.io/tfx-oss-public/tfx:1.16.0

ARG GPU=0
# TFT and TFMA 1.16 need Keras 2 (tf_keras); the model code uses it explicitly too.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/retina-tfx
COPY constraints.txt setup.py pyproject.toml README.md ./
COPY pipeline pipeline
COPY cli cli
COPY synthetic_drive synthetic_drive
COPY components components
COPY models models
COPY schemas schemas

# What the image lacks, at the lock's versions; then the project itself without touching the
# image's TFX stack. With GPU=1, TensorFlow's CUDA wheels (MirroredStrategy + mixed precision then
# switch on by themselves in the Trainer: models.training.choose_strategy).
RUN pip install --no-cache-dir -c constraints.txt tf-keras opencv-python-headless scikit-learn \
 && if [ "$GPU" = "1" ]; then \
      pip install --no-cache-dir "tensorflow[and-cuda]==$(pip show tensorflow | sed -n 's/^Version: //p')"; \
    fi \
 && pip install --no-cache-dir --no-deps . \
 && python -c "import models.training, pipeline.pipeline, components.patch_gen.executor"
