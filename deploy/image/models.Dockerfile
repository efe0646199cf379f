# The model repository image that Triton's pod copies in at start (deploy/k8s/base/triton.yaml):
#   /opt/ctriage-models/model_repository   inference/model_repository, every model and config
#   /opt/ctriage-models/python              ctriage's `inference` package and numpy/scipy for the
#                                           Python-backend models (PYTHONPATH in the Triton pod)
# Built for the official Triton container 24.12 (Ubuntu 24.04, Python 3.12). A new model version
# is a new tag of this image (docs/runbook.md, "Model rollout and rollback"). Build from the root:
#   docker build -f deploy/image/models.Dockerfile -t registry.example.org/ctriage/ctriage-models:0.1.0 .
FROM python:3.12.11-slim-bookworm AS python
# numpy < 2: numpy 2 breaks tensor passing in Triton's Python backend (see ARCHITECTURE.md)
RUN pip install --no-cache-dir --target /opt/ctriage-models/python numpy==1.26.4 scipy==1.15.3
COPY inference /opt/ctriage-models/python/inference
COPY inference/model_repository /opt/ctriage-models/model_repository

FROM busybox:1.37.0
COPY --from=python /opt/ctriage-models /opt/ctriage-models
USER 1000:1000
