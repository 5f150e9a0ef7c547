# hanami_torch: set up, build, train and test with one command each.
#
#   make mnist        train the MNIST example, save checkpoints/mnist.safetensors
#   make test         run the whole test suite, then the race check of the GPU's train step
#   make race-check   tests/test_portable_train.py on a ThreadSanitizer build (build/tsan)
#   make build        create/update .venv and (re)build the C++ extension
#   make bench        MNIST benchmark against a PyTorch MLP, JSON in bench-results/
#   make cuda-build   check that the CUDA extension compiles (needs nvcc; no GPU needed)
#   make cuda-check   on a GPU machine: build the CUDA extension in place, run the GPU tests and
#                     the GPU benchmark (logs and JSON in bench-results/; see docs/gpu.md)
#   make clean        remove build outputs (keeps .venv);  make distclean  also removes .venv
#
# Every target creates .venv on first use and is quick on the next run: torch is only installed
# when the venv lacks the pinned release, the package is re-installed when its metadata changes,
# and the extension is rebuilt incrementally (ninja) whenever csrc/ changed.

SYSTEM_PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# Pinned: these two lie on the machines' disk; any other release downloads several GB.
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
# setuptools>=70.1 builds wheels without the separate `wheel` package (needed without build isolation).
PY_DEPS := numpy ninja pytest pytest-timeout safetensors tqdm matplotlib "setuptools>=70.1" \
	"aiohttp>=3.9,<4" "PyJWT>=2.8,<3" hypothesis river vowpalwabbit

# The build and the runs happen on the same machine, so the extension may use its whole instruction set.
export HANAMI_NATIVE ?= 1
# torch's extension builder looks for `ninja` on PATH; the venv has it.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

MNIST_ARGS ?=
BENCH_ARGS ?= --epochs 1
PYTEST_ARGS ?=

CUDA_HOME ?= /usr/local/cuda

.PHONY: all mnist test race-check build bench cuda-build cuda-check venv clean distclean

all: build

mnist: build
	$(PY) examples/mnist.py $(MNIST_ARGS)

test: build
	$(PY) -m pytest -q tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory race-check

# The portable train step (the GPU's code) with four threads under ThreadSanitizer.
race-check: $(VENV)/.installed
	PYTHON=$(PY) tests/race_check.sh

bench: build
	mkdir -p bench-results
	$(PY) benchmarks/mnist_online.py $(BENCH_ARGS) --json bench-results/mnist_online.json

# Always run: ninja recompiles only the objects whose sources or headers changed (then the
# library is relinked), so a build with nothing to do takes a few seconds.
build: $(VENV)/.installed
	$(PY) setup.py --quiet build_ext --inplace

venv: $(VENV)/.deps

$(PY):
	$(SYSTEM_PYTHON) -m venv $(VENV)

$(VENV)/.deps: Makefile | $(PY)
	@if $(PY) -c "import sys, torch, torchvision; \
	    sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)' \
	             or torchvision.__version__.split('+')[0] != '$(TORCHVISION_VERSION)')" 2>/dev/null; then \
	    echo "torch $(TORCH_VERSION) and torchvision $(TORCHVISION_VERSION) already installed"; \
	else \
	    $(PIP) install torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION); \
	fi
	$(PIP) install --quiet $(PY_DEPS)
	touch $@

# The editable install also builds the extension; later builds go through `build` above.
$(VENV)/.installed: $(VENV)/.deps pyproject.toml setup.py hanami_torch/_version.py
	$(PIP) install --quiet --no-build-isolation -e .
	touch $@

# Compile-only check of the CUDA build, in its own folder (build/cuda*): the CPU library in
# hanami_torch/ is left alone.
cuda-build: $(VENV)/.installed
	HANAMI_CUDA=1 CUDA_HOME=$(CUDA_HOME) $(PY) setup.py --quiet build_ext

# Needs a GPU. Replaces hanami_torch/_C*.so by the CUDA build (`make build` puts the CPU one back).
cuda-check: $(VENV)/.installed
	PYTHON=$(PY) CUDA_HOME=$(CUDA_HOME) benchmarks/gpu_check.sh bench-results

clean:
	rm -rf build *.egg-info hanami_torch/*.egg-info
	rm -f hanami_torch/_C*.so

distclean: clean
	rm -rf $(VENV)
