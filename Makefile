# Porcelain over CMake. Every target installs what it needs first (scripts/install-deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test unit integration lint fuzz bench demo image manifests clean

all: build

deps:
	bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	bash scripts/install-deps.sh
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The README's test command: unit, lint and (as root) integration tests.
test: deps build
	cd $(BUILD) && ctest --output-on-failure --timeout 600

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

integration: deps build
	cd $(BUILD) && ctest -L integration --output-on-failure

lint: build
	cd $(BUILD) && ctest -L lint --output-on-failure

# A longer fuzzing session than the 20 s ctest gives it.
fuzz: build
	mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/bin/colo-fuzz -max_total_time=$${FUZZ_SECONDS:-300} -max_len=8192 $(BUILD)/fuzz-corpus test/fuzz/corpus

# The container image, built offline with podman (scripts/build-image.sh), and saved for kind.
image:
	bash scripts/build-image.sh

# manifests/ rendered from charts/colo with the default values (CI fails when it is stale).
manifests:
	bash scripts/render-chart.sh --write

bench: deps build
	bash bench/run.sh $(BUILD)

# The README's main job: a simulated node with pods as network namespaces.
demo: deps build
	bash scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)
