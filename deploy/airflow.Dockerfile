# syntax=docker/dockerfile:1
# Airflow image for docker-compose.yaml: the official apache/airflow image with batchq pip-installed
# from this repository (its `airflow` extra; the plugin registers through the package's entry point).
#   docker build -f deploy/airflow.Dockerfile -t batchq-airflow .
# The Astro project's image is the Dockerfile at the repo root (Astro Runtime).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

COPY --chown=airflow:0 pyproject.toml README.md /opt/batchq/
COPY --chown=airflow:0 include/ /opt/batchq/include/
# Keep the image's Airflow: pin it while installing, so batchq's range can never move it.
RUN AIRFLOW_VERSION="$(python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')" && \
    pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/batchq[airflow]"

# Named specs (spec="customer_batch") are looked up here; compose mounts include/specs over it.
COPY --chown=airflow:0 include/specs/ /opt/airflow/specs/
ENV AIRFLOW__BATCHQ__SPEC_DIR=/opt/airflow/specs
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
