# The newcomer's entry points. The build itself is CMake; this file only
# strings the steps together.
#
#   make deps          install the Debian packages in deps/debian-packages.txt
#                      (all but the compose-only ones)
#   make build         release build in ./build
#   make test          ASan+UBSan build in ./build-asan, then every test with ctest
#   make run           server (SQLite) + gateway on loopback with demo data
#                      (RUN_GRPC, RUN_HTTP, RUN_VAR choose other ports/folder)
#   make build-types   configure + build Debug, Release, RelWithDebInfo and
#                      ASan (+UBSan) with gcc and clang; a warning fails
#   make test-compose  build the images, run the compose stack with podman
#   make bench         the load benchmark (bench/run.sh)
#   make clean         remove the build dirs (./var, the demo data, is kept)

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
CMAKE_ARGS ?=
DEPS_TAGS ?= build test tools runtime
BUILD_TYPES ?= Debug Release RelWithDebInfo ASan
COMPILERS ?= gcc clang

PROGRAMS   = device-assignment-server device-assignment-gateway device-assignment

.PHONY: all deps build programs test run build-types test-compose bench clean distclean

all: build

deps:
	@scripts/deps.sh $(DEPS_TAGS)

build: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: deps
	cmake -S . -B $(ASAN_DIR) -DDAS_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_DIR) -j$(JOBS)
	cd $(ASAN_DIR) && ctest --output-on-failure -j$(CTEST_JOBS)

# Only the three programs: make run does not wait for (or trip on) tests.
programs: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j$(JOBS) --target $(PROGRAMS)

# The ports are checked before the build, so a busy one is named at once.
# exec: no shell between make and the script, so a Ctrl-C ends quietly
# (the script stops both programs and exits 0; make then ends by the SIGINT
# it got itself, printing nothing).
run:
	@RUN_GRPC=$(RUN_GRPC) RUN_HTTP=$(RUN_HTTP) scripts/run.sh --check-ports
	@$(MAKE) --no-print-directory programs
	@BUILD_DIR=$(BUILD_DIR) RUN_GRPC=$(RUN_GRPC) RUN_HTTP=$(RUN_HTTP) \
	  RUN_VAR=$(RUN_VAR) exec scripts/run.sh

# Each build type with each compiler, in build-types/<compiler>-<type>; a
# warning anywhere in the output (even where -Werror does not reach) fails.
build-types: deps
	@set -e; for cc in $(COMPILERS); do for bt in $(BUILD_TYPES); do \
	  d=build-types/$$cc-$$bt; echo "== $$cc $$bt ($$d)"; \
	  case $$bt in ASan) a="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DDAS_SANITIZE=ON";; \
	    *) a="-DCMAKE_BUILD_TYPE=$$bt";; esac; \
	  CC=$$cc cmake -S . -B $$d $$a $(CMAKE_ARGS) >/dev/null; \
	  if ! cmake --build $$d -j$(JOBS) >$$d.log 2>&1 || grep -q 'warning:' $$d.log; then \
	    grep -B2 -A6 -E 'warning:|error:' $$d.log | head -60; \
	    echo "build-types: $$cc $$bt failed or warned (full log: $$d.log)"; exit 1; fi; \
	  rm -f $$d.log; done; done

test-compose:
	scripts/test-compose.sh

bench: build
	bench/run.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) build-types

# Also forgets the demo database and its JWT secret.
distclean: clean
	rm -rf var
