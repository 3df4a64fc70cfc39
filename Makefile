# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A thin wrapper over Meson + Ninja for the README's two commands:
#   make demo    install dependencies, build, run `faultline demo`
#   make check   install dependencies, run the whole test suite (tools/check.sh)
#   make check-vm KERNEL=6.1
#                the suites CI runs on another kernel, booted under QEMU
#                (tools/vm-check.sh; VM_FLAGS="--suites all --demo" for more)
# and a few conveniences:
#   make build   configure build/ if needed and build it
#   make install install the build (DESTDIR honoured)
#   make clean   remove the build directories
# Anything more specific: use meson and ninja directly on build/.

BUILDDIR ?= build
MESON ?= meson
NINJA ?= ninja
CHECK_FLAGS ?=
KERNEL ?= 6.1
VM_FLAGS ?=

.PHONY: all deps build demo check check-vm install clean

all: build

deps:
	@tools/install-deps.sh

# Configure only when build/ has not been set up; later changes to meson.build
# are picked up by ninja itself.
$(BUILDDIR)/build.ninja: | deps
	$(MESON) setup $(BUILDDIR)

build: $(BUILDDIR)/build.ninja
	$(NINJA) -C $(BUILDDIR)

demo: build
	$(BUILDDIR)/cli/faultline demo

check: deps
	tools/check.sh $(CHECK_FLAGS)

check-vm: build
	tools/vm-check.sh --kernel $(KERNEL) --build $(BUILDDIR) $(VM_FLAGS)

install: build
	$(MESON) install -C $(BUILDDIR) --no-rebuild $(if $(DESTDIR),--destdir "$(DESTDIR)")

clean:
	rm -rf $(BUILDDIR) build-asan
