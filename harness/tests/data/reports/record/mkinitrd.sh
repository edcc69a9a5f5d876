#!/bin/sh
# Builds the recording initramfs: static busybox + ccwhold + segv + init.
# usage: mkinitrd.sh OUT.gz   (needs s390x-linux-gnu-gcc and the busybox of ci/install-deps.sh)
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath "$1")
d=$(mktemp -d)
mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev"
cp /usr/local/share/ccwrig/busybox "$d/bin/busybox"
s390x-linux-gnu-gcc -static -O2 -o "$d/ccwhold" "$here/ccwhold.c"
s390x-linux-gnu-gcc -static -O0 -o "$d/segv" "$here/segv.c"
cp "$here/init" "$d/init"
chmod +x "$d/init"
(cd "$d" && find . | cpio -o -H newc --quiet | gzip -1 > "$out")
rm -rf "$d"
