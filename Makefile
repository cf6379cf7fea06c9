# Makefile -- drives everything: deps, build, test, bench, demo, clean.
# The build itself is described in premake5.lua (premake5, or Debian's
# premake4 reading the same file); this file only calls it.

DEBS = gcc make premake4 libopenblas-dev libpcre2-dev libyaml-dev lua-check \
       liblua5.4-dev lua5.4 lua-busted
PREMAKE := $(shell command -v premake5 2>/dev/null || command -v premake4 2>/dev/null || echo premake4)
JOBS ?= 2
BUILD = $(MAKE) --no-print-directory -C build -j$(JOBS)

.PHONY: all deps build asan test bench demo model clean

all: build

# Installs the Debian packages that are missing (as root), or says how to.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:" $$missing; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "missing packages; run as root:"; \
	    echo "  apt-get install -y" $$missing; exit 1; \
	  fi; \
	fi

build/Makefile: premake5.lua $(wildcard spec/core/test_*.c spec/tools/*.c)
	$(PREMAKE) --file=premake5.lua gmake

build: deps build/Makefile
	@$(BUILD) config=release

asan: deps build/Makefile
	@$(BUILD) config=asan

test: build asan
	@sh spec/run_tests.sh

bench: build
	@build/release/bench
	@build/release/tide spec/tools/bench.lua
	@build/release/bench_constrain

demo: build
	@build/release/demo
	@echo
	@build/release/tide recipes/demo.lua

# Rebuilds the bundled model from scratch (about an hour on 2 cores):
# corpus -> tokenizer -> training -> F16 -> manifest. See docs/default-model.md.
model: build
	build/release/tide models/corpus.lua
	build/release/train_tokenizer
	OPENBLAS_NUM_THREADS=2 build/release/tide recipes/train.lua models/tide-small.train.yaml
	build/release/quantize build/tide-small-f32.gguf models/tide-small.gguf f16
	build/release/tide models/baselines.lua models/tide-small.gguf build/corpus/train.txt \
	  build/corpus/heldout.txt build/tide-small-eval.yaml
	build/release/tide models/manifest.lua models/tide-small.train.yaml models/tide-small.gguf

clean:
	rm -rf build
