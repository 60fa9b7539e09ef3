# Convenience wrapper around meson/ninja.
#   make           install missing packages, build into build/
#   make check     build normal + ASan/UBSan trees, run every default test
#   make check-long  also run the long soak/fuzz/crash tests
#   make demo      the end-to-end deduplication demo
#   make bench     benchmarks against stock QEMU (not tests; prints ratios)

BUILD     ?= build
BUILD_SAN ?= build-san
NINJA     ?= ninja
MESON     ?= meson
# Meson runs tests in parallel; the machine has few cores and iotests do I/O.
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps check check-unit check-san check-long demo bench clean

all: deps $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

deps:
	@sh scripts/install-deps.sh

$(BUILD)/build.ninja:
	./configure --builddir=$(BUILD)

$(BUILD_SAN)/build.ninja:
	./configure --builddir=$(BUILD_SAN) --enable-sanitizers

check: all $(BUILD_SAN)/build.ninja
	$(NINJA) -C $(BUILD_SAN)
	@rc=0; \
	$(MESON) test -C $(BUILD) --num-processes $(TEST_JOBS) --print-errorlogs || rc=1; \
	$(MESON) test -C $(BUILD_SAN) --num-processes $(TEST_JOBS) --print-errorlogs \
	    --suite sanitizers || rc=1; \
	exit $$rc

check-long: all
	$(MESON) configure $(BUILD) -Dlong_tests=true
	$(MESON) test -C $(BUILD) --num-processes $(TEST_JOBS) --print-errorlogs \
	    --suite long --timeout-multiplier 0

demo: all
	python3 scripts/demo.py $(BUILD)

bench: all
	sh tests/bench/run-all.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
