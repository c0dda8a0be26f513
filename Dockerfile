# syntax=docker/dockerfile:1
# Airflow image for batchq, laid out like an Astro project: AIRFLOW_HOME=/usr/local/airflow holding
# dags/, plugins/ and include/, Python deps from requirements.txt.
#
# On Astro, use the Astro Runtime image that ships Airflow 3.3.x as the base instead, e.g.
#   docker build --build-arg AIRFLOW_IMAGE=astrocrpublic.azurecr.io/runtime:3.3-<patch> .
# (the runtime already uses /usr/local/airflow as AIRFLOW_HOME). The default is the upstream image.
#
# Workers are NOT built from this file: they are Airflow-free (deploy/worker.Dockerfile, `.[worker]`).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ENV AIRFLOW_HOME=/usr/local/airflow \
    # include/ is not on sys.path by default (Airflow adds dags/ and plugins/ only); batchq lives in
    # include/batchq and is imported from there, not pip-installed.
    PYTHONPATH=/usr/local/airflow/include \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

USER root
RUN mkdir -p /usr/local/airflow && chown -R airflow:0 /usr/local/airflow
USER airflow
WORKDIR /usr/local/airflow

COPY --chown=airflow:0 requirements.txt ./
# Pin apache-airflow to the base image's version so requirements.txt can never move it.
RUN AIRFLOW_VERSION="$(python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')" && \
    pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.txt

COPY --chown=airflow:0 include/ ./include/
COPY --chown=airflow:0 plugins/ ./plugins/
COPY --chown=airflow:0 dags/ ./dags/
