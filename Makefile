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

.PHONY: demo test lint test-long test-gpu bench install system-deps lock clean

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
