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

# batchq's sensor and drain operator follow Airflow's [operators] default_deferrable: wait in the triggerer.
ENV AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True

# The deployable image carries no test tools. `astro dev pytest` runs the DAG tests (tests/dags) in a
# container of this image: they install what they need themselves (requirements-dev.txt, see
# tests/dags/conftest.py and docs/deploy.md), so nothing for testing is ever deployed.
