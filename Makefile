# Common verbs. Everything runs inside the locked environment in .venv (created by `make setup`).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export UV_COMPILE_BYTECODE := 1

.PHONY: retrain rollback drift schedule bench-scale test-fast probe setup run serve inference-service repro metrics workflows submit image base-image podman-setup push verify release reproduce s3-up s3-down test lint format bench clean

setup: .venv/.synced
.venv/.synced: pyproject.toml uv.lock
	uv sync --frozen
	touch $@

run: setup s3-up  ## the whole pipeline on the data chosen in params.yaml, pushed to the S3 remote
	python -m mlcore.params
	dvc repro
	python -m mlcore.stages provenance $(if $(ALLOW_DIRTY),--allow-dirty)
	python -m mlcore.ops.remote check
	dvc push --run-cache
	dvc metrics show
	python -m mlcore.ops.verdict

repro: run

s3-up: setup  ## start the local S3 server (SeaweedFS) and point the DVC remote at it
	python -m mlcore.ops.remote up

s3-down:
	python -m mlcore.ops.remote down

push: s3-up
	python -m mlcore.ops.remote check
	dvc push --run-cache

verify: s3-up  ## check every object of dvc.lock on the remote (missing or altered)
	python -m mlcore.ops.verify

release: s3-up  ## make release VERSION=v1.0.0 [STAGE=prod]
	python -m mlcore.ops.release $(VERSION) $(if $(STAGE),--stage $(STAGE))

retrain: s3-up  ## make retrain [DRIFT=http://127.0.0.1:8080/metrics]: new samples -> data version -> challenger -> promote or refuse
	python -m mlcore.ops.retrain $(if $(DRIFT),--drift $(DRIFT))

rollback: setup  ## give prod back to the model version that held it before (GTO)
	python -m mlcore.ops.registry rollback

drift: setup  ## make drift METRICS=http://127.0.0.1:8080/metrics: served inputs and outputs against the training split
	python -m mlcore.ops.drift --metrics $(METRICS)

serve: s3-up  ## make serve [REF=model@v1.0.0] [PORT=8080] [FEEDBACK=1]: the V2 inference server for a released model
	python -m mlcore.ops.serve $(REF) $(if $(PORT),--port $(PORT)) $(if $(FEEDBACK),--feedback)

inference-service: setup  ## make inference-service REF=model@v1.0.0 [FEEDBACK_URL=s3://mlcore/feedback] | kubectl apply -f -
	@python -m workflows.serving $(REF) $(if $(FEEDBACK_URL),--feedback-url $(FEEDBACK_URL))

schedule: setup  ## make schedule REF=<commit> [IMAGE_DIGEST=sha256:...] [EVENTS=1] | kubectl apply -f -: the retrain CronWorkflow (and Sensor) for that image
	@python -m workflows.retrain $(REF) $(if $(IMAGE_DIGEST),--image-digest $(IMAGE_DIGEST)) $(if $(EVENTS),--events)

reproduce: s3-up  ## make reproduce REF=model@v1.0.0 [RETRAIN=1]
	python -m mlcore.ops.replay $(REF) $(if $(RETRAIN),--retrain)

metrics: setup
	dvc metrics show

test: setup image  ## the whole suite; the workflow test runs its pods in the project image (podman or docker)
	pytest

test-fast: setup  ## the unit-level tests (no training, no image), in under a minute
	pytest -m "not slow"

lint: setup
	ruff check .
	ruff format --check .

format: setup
	ruff check --fix .
	ruff format .

workflows: setup  ## regenerate argo/ from dvc.yaml
	python -m workflows
	python -m tests.argo_schema argo/*.yaml

submit: setup  ## make submit REF=HEAD [REPRODUCE=1 [ANY_HARDWARE=1]] [RETRAIN=1] [PARAMS="s3-endpoint=..."] [DRY_RUN=1]
	python -m workflows.submit $(REF) $(if $(REPRODUCE),--reproduce) $(if $(RETRAIN),--retrain) $(if $(ANY_HARDWARE),--any-hardware) \
		$(foreach p,$(PARAMS),-p $(p)) $(if $(DRY_RUN),--dry-run)

image:  ## the project image at HEAD from a fresh clone: mlcore:<short commit>, mlcore:<commit> [EXTRA_CA_CERTS=ca.pem] [BASE_IMAGE=...] [CONTAINER_ENGINE=docker|podman]
	CONTAINER_ENGINE="$(CONTAINER_ENGINE)" BASE_IMAGE="$(BASE_IMAGE)" EXTRA_CA_CERTS="$(EXTRA_CA_CERTS)" docker/build.sh

base-image:  ## the local base image from a Debian mirror (no registry needed; `make image` builds it when needed)
	ENGINE="$(or $(CONTAINER_ENGINE),podman)" docker/local-base.sh

podman-setup:  ## install podman, buildah, mmdebstrap, runc and their containers.conf (root; Debian/Ubuntu)
	docker/podman-setup.sh

probe: setup  ## hash a training step's operations on this machine; compare with tests/hardware_probes/
	python -m mlcore.ops.probe

bench: setup
	python -m bench.input_pipeline
	python -m bench.stage_times
	python -m bench.remote_throughput
	python -m bench.restore_vs_retrain
	python -m bench.serving_load
	python -m bench.isa_cap
	python -m bench.warmup
	python -m bench.adversarial_training

bench-scale: setup  ## fetch, prepare, DVC transfers and training at the real data's size (~15 min)
	python -m bench.scale

clean:
	rm -rf .cache logs
