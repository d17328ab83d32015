#!/bin/bash
# Installs what is missing, builds fdhttp into ./build, and runs fdhttp-echo
# in the foreground on fdhttp-echo.sock in the directory this was run from.
# Ctrl-C stops it.
set -euo pipefail

here=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sock=$here/fdhttp-echo.sock

cd "$root"
./contrib/install-deps.sh
cmake -S . -B build
cmake --build build -j"$(nproc)"
echo_bin=$root/build/examples/fdhttp-echo

# A socket file that answers belongs to a running server: leave it alone.
# One that refuses connections is stale and is replaced; anything else at
# that path is not ours to remove.
if [ -S "$sock" ]; then
	if curl -s -o /dev/null --max-time 2 --unix-socket "$sock" http://localhost/health; then
		echo "run-echo.sh: a server is already listening on $sock" >&2
		exit 1
	fi
	rm -f "$sock"
elif [ -e "$sock" ] || [ -L "$sock" ]; then
	echo "run-echo.sh: $sock exists and is not a socket; not touching it" >&2
	exit 1
fi

cd "$here"
trap 'rm -f "$sock"' EXIT
printf '\nfdhttp-echo listening on %s (Ctrl-C stops it). Try:\n\n' "$sock"
printf '  curl --unix-socket %q http://localhost/health\n' "$sock"
printf '  curl --unix-socket %q -d hello http://localhost/echo\n\n' "$sock"
"$echo_bin" --socket "$sock"
