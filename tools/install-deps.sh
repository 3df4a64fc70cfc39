#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Install the Debian 12 packages that building and testing faultline need.
# Idempotent and silent when everything is installed: only then does it run
# apt-get (update + install of what is missing). Run as root, or as a user
# with sudo.

set -euo pipefail

packages=(
	build-essential		# gcc, make, libc headers, libasan/libubsan for gcc
	meson
	ninja-build
	pkg-config		# the install check compiles an example with it
	# The optional parts (-Dlz4, -Dtls, -Dredis; see the README): installed
	# all the same, the full build is the default and what CI tests first.
	liblz4-dev
	libxxhash-dev		# always required: the page checksum
	libgnutls28-dev
	gnutls-bin		# certtool: test certificates for the page server (test/net)
	libhiredis-dev
	libjansson-dev
	libsystemd-dev		# faultlined: sd_notify readiness, socket activation
	liburing-dev
	redis-server
	clang
	groff-base		# test suite 'man' renders every page with groff
	libclang-rt-14-dev	# clang's sanitizer runtimes (ASan, UBSan, LSan)
	afl++			# test examples/fuzz: fuzz-target built with afl-cc, a few seconds of afl-fuzz
	abigail-tools		# abidw/abidiff: tools/check-abi.sh compares struct layouts with abi/libfaultline.abi
	iproute2		# ip, tc: network namespaces, veth pairs and tbf for the migration tests, bench and kv-migrate
)

installed() {
	local status

	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[ "${status##* }" = installed ]
}

missing=()
for pkg in "${packages[@]}"; do
	if ! installed "$pkg"; then
		missing+=("$pkg")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "install-deps: not root and no sudo; missing packages: ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
