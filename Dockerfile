# edgetl workstation image: train, export, validate and report (the device side needs no Docker).
#
# CPU (default):  docker build -t edgetl:0.1.0 .
# NVIDIA GPU:     docker build --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu -t edgetl:0.1.0-gpu .
#                 (its TensorFlow satisfies .[train]; or any nvidia/cuda:*-cudnn-runtime base that has
#                 Python 3.10-3.12 and pip), then `docker run --gpus all ...`
# Host-owned runs: add --build-arg EDGETL_UID="$(id -u)" so files written to a mounted /runs are yours.
# Run:            see README ("Docker"): mount data read-only on /data, runs on /runs, weights on /weights.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG EDGETL_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLBACKEND=Agg

# Non-root user; its home holds the feature cache (~/.cache/edgetl) and Keras' weight cache.
RUN useradd --create-home --uid "${EDGETL_UID}" --user-group --shell /usr/sbin/nologin edgetl \
    && mkdir -p /data /runs /weights \
    && chown edgetl:edgetl /runs

WORKDIR /opt/edgetl
# README* matches nothing harmlessly while the readme is missing; pyproject.toml must exist.
COPY pyproject.toml README* ./
COPY edgetl ./edgetl
# The project itself, with the dependency ranges of its [train] extra (pyproject.toml pins them).
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir ".[train]" \
    && edgetl --version \
    && edgetl doctor

USER ${EDGETL_UID}
WORKDIR /runs
VOLUME ["/data", "/runs"]
ENTRYPOINT ["edgetl"]
CMD ["--help"]
