# batchq developer/CI entry points (GNU make).
#
#   make venv             .venv (Python 3.11) with pip install -e '.[airflow,drain,worker,test]'
#   make test             the full test suite (moto server fixtures) except the live deployment tests;
#                         PYTEST_ARGS=... passes through
#   make test-deployment  a live Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor and
#                         Celery) on PostgreSQL + Redis, runs triggered through the REST API (~6 min)
#   make test-localstack  integration + e2e tests against LocalStack (started and stopped here)
#   make test-aws         the AWS stack (deploy/aws): synth, cfn-lint, checkov, least privilege from the code
#                         (in .venv-iac), then deployed into LocalStack by CloudFormation and a batch run on it
#   make aws-lambda-package  deploy/aws/build/lambda: the Lambda worker's package (cdk -c lambda_package=...)
#   make localstack       LocalStack in the foreground; localstack-start / localstack-stop / localstack-status
#   make demo             the example DAG end to end with a live view (BIG=1: an 8,000-payload burst)
#   make test-airflow-oldest  DAG/task-group tests + the fan-out DAG test on the oldest supported Airflow
#   make bench            bench/fanout.py, bench/workers.py, bench/burst_isolation.py, bench/requests_per_payload.py
#   make lint             ruff (installed on demand into .venv)
#   make clean            remove venvs, caches and LocalStack state

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV        ?= .venv
VPY         := $(VENV)/bin/python
EXTRAS      ?= airflow,drain,worker,test
PYTEST_ARGS ?=

# Python 3.11 for the project venv: pyenv's install if present (a pyenv shim only runs when that
# version is selected), else python3.11 on PATH, else python3.
PYTHON311 ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.11*/bin/python3.11) \
                         $(shell command -v python3.11 2>/dev/null) python3)

LOCALSTACK_PORT ?= 4566
LOCALSTACK_VENV ?= $(CURDIR)/.venv-localstack
LOCALSTACK      := bash scripts/localstack.sh
export LOCALSTACK_PORT LOCALSTACK_VENV

# This machine's pip config lists local index folders that may be absent; keep pip's output readable.
PIP_NOISE := { grep -v '^WARNING: Location .* is ignored' || true; }

.PHONY: help venv test test-deployment test-localstack test-aws iac-venv aws-lambda-package localstack localstack-install localstack-start \
        localstack-stop localstack-status demo bench lint clean test-airflow-oldest

help:
	@awk '!/^#/ {exit} {sub(/^# ?/, ""); print}' Makefile

# ---------------------------------------------------------------------------------------------- venv
venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@start=$$(date +%s); \
	if [ ! -x "$(VPY)" ]; then \
	  echo "creating $(VENV) with $(PYTHON311)"; \
	  "$(PYTHON311)" -m venv "$(VENV)"; \
	fi; \
	"$(VPY)" -m pip install -q --upgrade pip 2>&1 | $(PIP_NOISE); \
	"$(VPY)" -m pip install -q -e '.[$(EXTRAS)]' 2>&1 | $(PIP_NOISE); \
	: "The editable build leaves include/batchq.egg-info, and include/ is on the path (the editable .pth, \
	   PYTHONPATH=include): a second batchq distribution whose entry points Airflow loads again (Plugin \
	   'batchq' already registered). The venv's dist-info is the installed metadata; drop the copy."; \
	find include -maxdepth 1 -name '*.egg-info' -type d -prune -exec rm -rf {} +; \
	"$(VPY)" -c 'import importlib.metadata as m; print("venv ok:", *(f"{d} {m.version(d)}" for d in ("batchq", "apache-airflow", "moto", "pytest")))'; \
	touch "$@"; \
	echo "make venv: $$(( $$(date +%s) - start ))s"

# ---------------------------------------------------------------------------------------------- tests
# Two pytest-xdist workers by default (TEST_WORKERS=0 runs serially): most tests wait on a queue, a
# server or a subprocess, so two halve the wall time even on two cores. --dist loadfile keeps a file's
# tests (and its module fixtures, some of which run Airflow DAGs) on one worker.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
test: venv
	$(VPY) -m pytest tests -m "not deployment and not aws" $(XDIST) $(PYTEST_ARGS)

# Needs PostgreSQL on 127.0.0.1:5432 (a database of its own is created and dropped) and Redis on
# 127.0.0.1:6379 (the Celery broker); .ci/run starts both where they are not answering.
test-deployment: venv
	$(VPY) -m pytest tests/deployment -m deployment $(PYTEST_ARGS)

# LocalStack is stopped whatever the tests do (trap); pytest's exit code is make's. Each run has its own
# state dir, and takes a free port if LOCALSTACK_PORT (4566) is busy, so runs in one tree don't collide.
FREE_PORT := import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
PORT_FREE := import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))
test-localstack: venv localstack-install
	@port=$(LOCALSTACK_PORT); \
	if ! $(VPY) -c '$(PORT_FREE)' "$$port" 2>/dev/null; then \
	  port=$$($(VPY) -c '$(FREE_PORT)'); \
	  echo "test-localstack: 127.0.0.1:$(LOCALSTACK_PORT) is busy, using $$port"; \
	fi; \
	mkdir -p .localstack; \
	export LOCALSTACK_PORT=$$port LOCALSTACK_STATE_DIR="$$(mktemp -d $(CURDIR)/.localstack/test-XXXXXX)"; \
	trap '$(LOCALSTACK) stop; cp "$$LOCALSTACK_STATE_DIR/localstack.log" .localstack/test-localstack.log 2>/dev/null; rm -rf "$$LOCALSTACK_STATE_DIR"' EXIT; \
	$(LOCALSTACK) start; \
	BATCHQ_TEST_SQS_ENDPOINT=http://127.0.0.1:$$port \
	  $(VPY) -m pytest tests -m "integration or e2e" $(XDIST) $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------- AWS stack
# The IaC tools (CDK, cfn-lint, checkov) in a venv of their own: their pins conflict with the project's.
# The CDK app imports batchq from include/ (its queue plan is the stack's), so no install of batchq here.
IAC_VENV ?= .venv-iac
IAC_PY   := $(IAC_VENV)/bin/python
# LocalStack's free edition runs these; ECS and Application Auto Scaling are not in it, and Lambda
# needs Docker to run a function: those parts are checked from the synthesised template instead.
AWS_LOCALSTACK_SERVICES ?= cloudformation,sqs,sns,iam,cloudwatch,sts
# Node 20 (this machine's) is past jsii's support window: it works, and says so at every start.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20

$(IAC_VENV)/.stamp: deploy/aws/requirements.txt
	@start=$$(date +%s); \
	[ -x "$(IAC_PY)" ] || "$(PYTHON311)" -m venv "$(IAC_VENV)"; \
	"$(IAC_PY)" -m pip install -q --upgrade pip 2>&1 | $(PIP_NOISE); \
	"$(IAC_PY)" -m pip install -q -r deploy/aws/requirements.txt 2>&1 | $(PIP_NOISE); \
	command -v node >/dev/null || { echo "the CDK needs Node.js (apt-get install nodejs)"; exit 1; }; \
	touch "$@"; \
	echo "iac venv: $$(( $$(date +%s) - start ))s"

# 1. the stack's own tests (synth of every worker kind, cfn-lint, checkov, least privilege, template checks);
# 2. the stack for tests/aws/aws_batch.yaml created in LocalStack by CloudFormation (credentials are
#    LocalStack's dummies, never real ones); 3. tests/aws against it (project venv): outputs, no drift, a
#    batch end to end with each component's calls checked against its role.
iac-venv: $(IAC_VENV)/.stamp

test-aws: venv localstack-install $(IAC_VENV)/.stamp
	@t0=$$(date +%s); \
	$(IAC_PY) -m pytest deploy/aws/tests -p no:cacheprovider $(PYTEST_ARGS); \
	echo "test-aws: stack tests $$(( $$(date +%s) - t0 ))s"; \
	port=$(LOCALSTACK_PORT); \
	if ! $(VPY) -c '$(PORT_FREE)' "$$port" 2>/dev/null; then port=$$($(VPY) -c '$(FREE_PORT)'); fi; \
	mkdir -p .localstack; \
	export LOCALSTACK_PORT=$$port LOCALSTACK_SERVICES=$(AWS_LOCALSTACK_SERVICES) \
	  LOCALSTACK_STATE_DIR="$$(mktemp -d $(CURDIR)/.localstack/aws-XXXXXX)"; \
	trap '$(LOCALSTACK) stop; cp "$$LOCALSTACK_STATE_DIR/localstack.log" .localstack/test-aws.log 2>/dev/null; rm -rf "$$LOCALSTACK_STATE_DIR"' EXIT; \
	$(LOCALSTACK) start; \
	export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1; \
	t0=$$(date +%s); \
	$(IAC_PY) deploy/aws/synth.py --spec tests/aws/aws_batch.yaml --workers none --deploy \
	  --endpoint-url http://127.0.0.1:$$port --out "$$LOCALSTACK_STATE_DIR/template.json" \
	  --outputs "$$LOCALSTACK_STATE_DIR/outputs.json" >/dev/null; \
	echo "test-aws: synth + deploy into LocalStack $$(( $$(date +%s) - t0 ))s"; \
	BATCHQ_TEST_SQS_ENDPOINT=http://127.0.0.1:$$port BATCHQ_AWS_STACK_OUTPUTS="$$LOCALSTACK_STATE_DIR/outputs.json" \
	  BATCHQ_AWS_STACK_TEMPLATE="$$LOCALSTACK_STATE_DIR/template.json" \
	  $(VPY) -m pytest tests/aws -m aws $(PYTEST_ARGS)

# The Lambda worker's package: batchq[worker] and its dependencies, for the Lambda runtime (python3.11,
# x86_64: build it on Linux x86_64 with Python 3.11 so compiled wheels match). Add your handler package.
aws-lambda-package: venv
	rm -rf deploy/aws/build/lambda
	$(VPY) -m pip install -q --target deploy/aws/build/lambda '.[worker]' 2>&1 | $(PIP_NOISE)
	@echo "deploy/aws/build/lambda: cdk deploy -c lambda_package=build/lambda"

# ---------------------------------------------------------------------------------------------- oldest Airflow
# The bottom of the supported range (pyproject: apache-airflow>=3.2,<4) in its own venv, constrained to the
# project venv's versions where the old Airflow allows (scripts/airflow_oldest_venv.sh says why): the DAG,
# task-group and trigger tests, the Astro DAG tests, and `airflow dags test` of the fan-out. The newest end
# is the project venv (make test).
AIRFLOW_OLDEST ?= 3.2.0
OLDEST_VENV    ?= .venv-airflow-oldest
OLDEST_TESTS   ?= tests/unit/airflow tests/dags tests/e2e/test_customer_batch_fanout.py

$(OLDEST_VENV)/.stamp: pyproject.toml $(VENV)/.stamp scripts/airflow_oldest_venv.sh
	@start=$$(date +%s); \
	bash scripts/airflow_oldest_venv.sh "$(OLDEST_VENV)" "$(AIRFLOW_OLDEST)" "$(VPY)" "$(PYTHON311)"; \
	touch "$@"; \
	echo "oldest venv: $$(( $$(date +%s) - start ))s"

# batchq is not installed into this venv: include/ goes first on the path, so the tree under test is this one.
test-airflow-oldest: $(OLDEST_VENV)/.stamp
	AIRFLOW__CORE__LOAD_EXAMPLES=False PYTHONPATH=$(CURDIR)/include:$(CURDIR) \
	  $(OLDEST_VENV)/bin/python -m pytest $(OLDEST_TESTS) -p no:cacheprovider $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------- LocalStack
localstack-install: $(LOCALSTACK_VENV)/.batchq-installed

$(LOCALSTACK_VENV)/.batchq-installed: scripts/localstack.sh
	@start=$$(date +%s); \
	$(LOCALSTACK) install; \
	touch "$@"; \
	echo "localstack install: $$(( $$(date +%s) - start ))s"

localstack: localstack-install
	$(LOCALSTACK) run

localstack-start: localstack-install
	$(LOCALSTACK) start

localstack-stop:
	$(LOCALSTACK) stop

localstack-status:
	$(LOCALSTACK) status

# ---------------------------------------------------------------------------------------------- misc
demo: venv
	bash scripts/demo.sh

bench: venv
	$(VPY) bench/fanout.py
	$(VPY) bench/workers.py
	$(VPY) bench/burst_isolation.py
	$(VPY) bench/requests_per_payload.py

lint: venv
	@$(VPY) -m ruff --version >/dev/null 2>&1 || $(VPY) -m pip install -q ruff 2>&1 | $(PIP_NOISE)
	$(VPY) -m ruff check include tests bench dags plugins

clean:
	-@[ -f .localstack/localstack.pid ] && $(LOCALSTACK) stop || true
	rm -rf $(VENV) $(LOCALSTACK_VENV) $(OLDEST_VENV) $(IAC_VENV) deploy/aws/build deploy/aws/cdk.out .localstack .pytest_cache .hypothesis .ruff_cache build
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
	find include -maxdepth 2 -name '*.egg-info' -type d -prune -exec rm -rf {} +
