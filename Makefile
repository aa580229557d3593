# Porcelain over CMake. Every target installs what it needs first (scripts/install-deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc)
# The dev and CI build holds colo's code to its warnings (COLO_WERROR); a packager's plain
# `cmake -DCMAKE_BUILD_TYPE=Release` does not fail on a warning another compiler invents.
CMAKE_FLAGS ?= -DCOLO_WERROR=ON
# The sanitizer and cross builds, each in a directory of its own.
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
ARM64_BUILD ?= build-arm64

.PHONY: all deps configure build test unit integration lint fuzz bench demo image manifests clean \
        main-build main-test asan asan-build asan-test tsan tsan-build tsan-test \
        arm64 arm64-build arm64-test deps-arm64

all: build

deps:
	bash scripts/install-deps.sh

# Re-configured when this file changes, so that a flag added here reaches existing build dirs.
$(BUILD)/build.ninja: Makefile
	bash scripts/install-deps.sh
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)
	touch $@

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The README's test command and CI's (.ci/run): every stage below, one after the other, each with
# its build and test times; a failed stage does not stop the others, and the summary at the end
# names the stages and tests that failed (scripts/test-stages.sh). A stage joins the default once
# it has passed on main (docs/testing.md: state); `make test TEST_STAGES=main` runs one
TEST_STAGES ?= main asan tsan arm64
test:
	@MAKE="$(MAKE)" bash scripts/test-stages.sh $(TEST_STAGES)

# Stage main: the dev build (RelWithDebInfo, warnings are errors): unit, lint, fuzz (20 s) and,
# as root, every integration test.
main-build: build
main-test:
	cd $(BUILD) && ctest --output-on-failure --timeout 600

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

integration: deps build
	cd $(BUILD) && ctest -L integration --output-on-failure

lint: build
	cd $(BUILD) && ctest -L lint --output-on-failure

# Stage asan: ASan+UBSan, as a Debug build (no optimisation, assertions on: it is also CI's proof
# that Debug builds): the unit tests and the integration tests listed in
# test/integration/CMakeLists.txt (COLO_SANITIZED_TESTS).
$(ASAN_BUILD)/build.ninja: Makefile
	bash scripts/install-deps.sh
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOLO_SANITIZE=address,undefined
	touch $@

asan: asan-build asan-test
asan-build: $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
asan-test:
	cd $(ASAN_BUILD) && ctest --output-on-failure --timeout 900

# Stage tsan: TSan (RelWithDebInfo), the same tests. setarch -R: TSan's fixed memory layout and a
# kernel with more mmap randomness (vm.mmap_rnd_bits > 28) do not mix; without ASLR they always do.
$(TSAN_BUILD)/build.ninja: Makefile
	bash scripts/install-deps.sh
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCOLO_SANITIZE=thread
	touch $@

tsan: tsan-build tsan-test
tsan-build: $(TSAN_BUILD)/build.ninja
	cmake --build $(TSAN_BUILD) -j $(JOBS)
tsan-test:
	cd $(TSAN_BUILD) && setarch "$$(uname -m)" -R ctest --output-on-failure --timeout 900

# Stage arm64: colo-cni, colo-node, libcolo and coloctl cross-compiled with Debian's
# g++-aarch64-linux-gnu as a packager would (Release, warnings not errors: also CI's proof that
# Release builds); ctest checks that they are AArch64 code (colo-cni and coloctl static).
ARM64_TARGETS ?= colo-cni colo-node colo coloctl
deps-arm64:
	bash scripts/install-deps.sh --arm64

$(ARM64_BUILD)/build.ninja: Makefile cmake/toolchains/aarch64-linux-gnu.cmake
	bash scripts/install-deps.sh --arm64
	cmake -S . -B $(ARM64_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
	touch $@

arm64: arm64-build arm64-test
arm64-build: $(ARM64_BUILD)/build.ninja
	cmake --build $(ARM64_BUILD) -j $(JOBS) --target $(ARM64_TARGETS)
arm64-test:
	cd $(ARM64_BUILD) && ctest -L cross --output-on-failure --timeout 300

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(ARM64_BUILD)
