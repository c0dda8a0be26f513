# syntax=docker/dockerfile:1
# The Astro project's image (`astro dev start`, `astro dev pytest`, `astro deploy`): Astro Runtime 3.3-2
# ships Airflow 3.3, inside batchq's supported range (pyproject: apache-airflow>=3.2,<4). The runtime
# image's ONBUILD steps install packages.txt (apt) and requirements.txt (pip) and copy this project to
# AIRFLOW_HOME=/usr/local/airflow (dags/, plugins/, include/).
#
# docker-compose.yaml does NOT use this file (it builds deploy/airflow.Dockerfile on the upstream image);
# workers never do (deploy/worker.Dockerfile: no Airflow).
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# batchq is imported from include/ (include/batchq); Airflow only puts dags/ and plugins/ on sys.path.
# Named specs resolve to include/specs (batchq's default spec_dir beside the package).
ENV PYTHONPATH=/usr/local/airflow/include

# `astro dev pytest`: the DAG tests start their own SQS endpoint (moto) and need nothing from the host.
# Drop this line to keep the test tools out of a deployed image.
RUN pip install --no-cache-dir -r requirements-dev.txt
