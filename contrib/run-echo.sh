#!/bin/bash
# Installs what is missing, builds fdhttp into ./build, and runs fdhttp-echo
# under fdhttpd in the foreground, on fdhttp-echo.sock in the directory this
# was run from.  Ctrl-C stops it and removes the socket.
set -euo pipefail

here=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sock=$here/fdhttp-echo.sock

cd "$root"
./contrib/install-deps.sh
cmake -S . -B build
cmake --build build -j"$(nproc)"

cd "$here"
printf '\nfdhttpd with fdhttp-echo on %s (Ctrl-C stops it). Try:\n\n' "$sock"
printf '  curl --unix-socket %q http://localhost/health\n' "$sock"
printf '  curl --unix-socket %q -d hello http://localhost/echo\n\n' "$sock"
# As root, the workers run as nobody (fdhttpd refuses to run them as root);
# as anyone else, as that user.
user=()
if [ "$(id -u)" -eq 0 ]; then
	user=(--user nobody)
fi
# fdhttpd refuses a live server's socket and anything that is not a socket,
# and replaces a stale one.
exec "$root/build/src/fdhttpd/fdhttpd" --socket "$sock" --workers 2 "${user[@]}" -- \
	"$root/build/examples/fdhttp-echo"
