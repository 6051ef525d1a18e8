# embodied_vision: `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
# Each bootstraps .venv (torch 2.14.1 + torchvision 0.29.1, the rest from PyPI, pinned by
# constraints.txt) and, when run as root, the apt packages for headless rendering and open3d.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= sim,ros,language,dev
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
APT_PACKAGES := libegl1 libegl-mesa0 libgl1 libgles2 libusb-1.0-0
PYTEST_ARGS ?=

export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: demo test lint test-long test-gpu bench install system-deps lock clean eval-mbs

# Closed loop sim_node + encoder_node + policy_node in one process, then the encoder report.
demo: $(STAMP)
	$(VENV)/bin/embodied-vision pipeline launch/config/demo.yaml
	$(VENV)/bin/embodied-vision demo --out demo_output

test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Long training / evaluation runs (not part of `make test`).
test-long: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# GPU tests (TensorRT/fp16 parity, CUDA runtimes); skipped without CUDA.
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/encoders.py

# Long run (not part of `make test`): Manipulate-by-Seeing vs behaviour cloning on the same
# noisy wrist-camera PickPlace videos, closed loop from goal images, 3 seeds x 50 episodes.
# Smoke-size it with e.g. `make eval-mbs MBS_VIDEOS=2 MBS_STEPS=4 MBS_SIZE=32 EVAL_EPISODES=1`.
CLI := $(VENV)/bin/embodied-vision
MBS_VIDEOS ?= 60
MBS_STEPS ?= 5000
MBS_SIZE ?= 128
EVAL_EPISODES ?= 50
EVAL_SEEDS ?= 0 1 2
MBS_RUN ?= runs/mbs_eval
eval-mbs: $(STAMP)
	$(CLI) collect task=PickPlace n=$(MBS_VIDEOS) cameras=[wrist] size=$(MBS_SIZE) depth=false \
		expert_noise=0.3 progress=false out=$(MBS_RUN)/pick_videos.hdf5
	$(CLI) train experiment=mbs_pickplace task.videos=[$(MBS_RUN)/pick_videos.hdf5] \
		task.image_size=$(MBS_SIZE) task.resize_to=$$(( $(MBS_SIZE) * 15 / 14 )) \
		trainer.max_steps=$(MBS_STEPS) hydra.run.dir=$(MBS_RUN)/mbs
	$(CLI) train experiment=bc_mlp task.episodes=[$(MBS_RUN)/pick_videos.hdf5] task.camera=wrist \
		task.image_size=$(MBS_SIZE) trainer.max_steps=$(MBS_STEPS) hydra.run.dir=$(MBS_RUN)/bc
	$(CLI) evaluate $(MBS_RUN)/mbs/policy $(MBS_RUN)/bc/policy --task PickPlace \
		--episodes $(EVAL_EPISODES) --seeds $(EVAL_SEEDS) --video $(MBS_RUN)/episode.gif \
		--plot $(MBS_RUN)/mbs_vs_bc.png --json $(MBS_RUN)/mbs_vs_bc.json

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --prefer-binary -c constraints.txt -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "NOTE: headless rendering (MuJoCo EGL) and open3d need: $$missing"; \
		echo "      install them with: sudo apt-get install $$missing"; \
	fi

# Re-pin constraints.txt to what is installed now (after a deliberate upgrade).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^embodied.vision' > constraints.txt

clean:
	rm -rf $(VENV) build install log *.egg-info demo_output
