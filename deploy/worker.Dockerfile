# batchq worker image: the worker runtime and the example jobs, no Airflow.
#   docker build -f deploy/worker.Dockerfile -t batchq-worker .
#   docker run --rm -e AWS_REGION=eu-west-1 batchq-worker --spec /app/include/specs/customer_batch.yaml
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY include/ include/
# The [worker] extra is the core (pydantic, pyyaml, boto3) plus aws-lambda-powertools; never Airflow.
RUN pip install --no-cache-dir --prefix=/install ".[worker]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 batchq
COPY --from=build /install /usr/local
COPY include/specs/ /app/include/specs/
# Fail the build if anything pulled Airflow in.
RUN python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('airflow') is not None)"
USER batchq
ENV PYTHONUNBUFFERED=1
# Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds: keep --grace-period below it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["batchq", "worker", "--handlers", "batchq.examples"]
CMD ["--spec", "/app/include/specs/customer_batch.yaml", "--concurrency", "8", "--grace-period", "25"]
