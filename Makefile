# The newcomer's entry points. The build itself is CMake; this file only
# strings the steps together.
#
#   make deps    install the Debian packages in deps/debian-packages.txt
#   make build   release build in ./build
#   make test    ASan+UBSan build in ./build-asan, then every test with ctest
#   make run     server (SQLite) + gateway on loopback with demo data
#   make bench   the load benchmark (bench/run.sh)
#   make clean   remove the build dirs (./var, the demo data, is kept)

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
CMAKE_ARGS ?=

PROGRAMS   = device-assignment-server device-assignment-gateway device-assignment

.PHONY: all deps build programs test run bench clean distclean

all: build

deps:
	@scripts/deps.sh

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

run: programs
	@BUILD_DIR=$(BUILD_DIR) scripts/run.sh

bench: build
	bench/run.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)

# Also forgets the demo database and its JWT secret.
distclean: clean
	rm -rf var
