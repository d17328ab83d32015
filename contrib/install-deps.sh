#!/bin/bash
# Installs, with apt-get, what fdhttp needs to build and test on Debian 12.
# Runs apt-get only when a package is missing; needs root only then.
set -euo pipefail

packages=(
	build-essential		# cc, make, libc headers, gcc's sanitizer runtimes
	cmake
	pkg-config
	node-llhttp		# the HTTP/1.1 parser, shipped as C sources
	libbsd-dev		# strlcpy, setproctitle
	libseccomp-dev		# the worker sandbox
	libcmocka-dev		# C unit and integration tests
	curl			# integration tests, the README session
	python3			# integration tests (standard library only)
	systemd			# systemd-socket-activate, for socket-activation tests
	nginx			# tests of nginx in front of a service (contrib/nginx)
	clang			# sanitizer and fuzzer builds
	libclang-rt-14-dev	# clang's sanitizer and libFuzzer runtimes
	clang-tidy		# static analysis in CI (.clang-tidy)
	cppcheck		# static analysis in CI
)

installed() {
	local status
	# A removed package can linger as "deinstall ok config-files": not installed.
	status=$(dpkg -s "$1" 2>/dev/null | sed -n 's/^Status: //p' || true)
	[ "$status" = "install ok installed" ]
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: missing packages: ${missing[*]}" >&2
	echo "install-deps.sh: run it as root, or install them yourself" >&2
	exit 1
fi
echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
