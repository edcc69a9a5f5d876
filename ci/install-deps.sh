#!/usr/bin/env bash
# Installs everything ccwrig needs on a Debian 12 (bookworm) x86_64 host, as root.
# Idempotent: every step checks first, so a second run on a ready machine takes a second or two.
# The facts behind each step are in docs/DESIGN.md, 'Host packages' and 'The guest's Rust'.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it calls apt-get and writes /usr/lib/rustlib)"

# Debian's rustc 1.85 and its s390x std must match exactly: bookworm-security carries a newer
# rustc-web for amd64 only, so all three packages are pinned to this version.
RUST_DEB_VERSION="1.85.0+dfsg3-1~deb12u3"
HOST_PKGS=(gcc-s390x-linux-gnu libc6-dev-s390x-cross flex bison bc libelf-dev libssl-dev cpio
           xz-utils make patch git python3 python3-venv ca-certificates gdb-multiarch)
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() { if [ "$APT_UPDATED" = 0 ]; then log "apt-get update"; apt-get update -qq; APT_UPDATED=1; fi; }

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# 1. bookworm-backports for qemu-system-s390x 10.x (bookworm main's QEMU is too old).
#    The mirror is taken from the machine's own debian.sources so no host name is written here.
BACKPORTS=/etc/apt/sources.list.d/ccwrig-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || die "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources; add bookworm-backports by hand"
  log "adding bookworm-backports from $mirror"
  cat > "$BACKPORTS" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_UPDATED=0
fi

# 2. s390x as a foreign architecture, only to download s390x .debs (never apt-get install them).
if ! dpkg --print-foreign-architectures | grep -qx s390x; then
  log "adding foreign architecture s390x"
  dpkg --add-architecture s390x
  APT_UPDATED=0
fi

missing=()
for p in "${HOST_PKGS[@]}"; do have_pkg "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  log "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v qemu-system-s390x >/dev/null || ! qemu-system-s390x --version | grep -qE 'version (9|1[0-9])\.'; then
  apt_update
  log "installing qemu-system-s390x from bookworm-backports (no recommends: they pull a GTK stack)"
  apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-s390x
fi

rust_ok=1
for p in rustc-web libstd-rust-web-dev libstd-rust-web-1.85; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
  [ "$v" = "$RUST_DEB_VERSION" ] || rust_ok=0
done
if [ "$rust_ok" = 0 ]; then
  apt_update
  log "installing Debian rustc $RUST_DEB_VERSION (the guest agent's compiler)"
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "rustc-web=$RUST_DEB_VERSION" "libstd-rust-web-dev=$RUST_DEB_VERSION" "libstd-rust-web-1.85=$RUST_DEB_VERSION"
fi

# 3. Files that come out of s390x .debs: the rust std for the target, and a static busybox.
SYSROOT_STD=/usr/lib/rustlib/s390x-unknown-linux-gnu
DATA=/usr/local/share/ccwrig
STAMP="$SYSROOT_STD/.ccwrig-$RUST_DEB_VERSION"
if [ ! -f "$STAMP" ] || [ ! -x "$DATA/busybox" ]; then
  apt_update
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp"
    if [ ! -f "$STAMP" ]; then
      log "fetching the s390x rust std $RUST_DEB_VERSION"
      apt-get download -qq "libstd-rust-web-dev:s390x=$RUST_DEB_VERSION" "libstd-rust-web-1.85:s390x=$RUST_DEB_VERSION"
      for d in libstd-rust-web-*s390x.deb; do dpkg-deb -x "$d" x; done
      rm -rf "$SYSROOT_STD"
      mkdir -p /usr/lib/rustlib
      cp -a x/usr/lib/rustlib/s390x-unknown-linux-gnu /usr/lib/rustlib/
      touch "$STAMP"
    fi
    if [ ! -x "$DATA/busybox" ]; then
      log "fetching the static s390x busybox"
      apt-get download -qq busybox-static:s390x
      dpkg-deb -x busybox-static_*_s390x.deb bb
      mkdir -p "$DATA"
      install -m 0755 bb/bin/busybox "$DATA/busybox"
    fi
  )
fi

# 4. Kernel source package (arch all): the tarball is pinned by version and sha256 in kernel/pin.toml,
#    and the harness checks the hash; here it is only installed.
KSRC_PKGS=$(sed -n 's/^deb_package *= *"\(.*\)"/\1/p' "$(dirname "$0")/../kernel/pin.toml" 2>/dev/null || true)
for spec in $KSRC_PKGS; do
  name=${spec%%=*}; ver=${spec#*=}
  if [ "$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)" != "$ver" ]; then
    apt_update
    log "installing kernel source $spec"
    apt-get install -y -qq --no-install-recommends "$spec"
  fi
done

# 5. KernelCI's kcidb-io (the KCIDB schema and its validator) in its own virtualenv, for the test
#    that validates `ccwrig run --kcidb` output. The path is KCIDB_PYTHON in
#    harness/tests/ci_formats.rs.
KCIDB_VENV=/usr/local/share/ccwrig/kcidb-venv
KCIDB_IO_VERSION=141
if ! "$KCIDB_VENV/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('kcidb-io') != '$KCIDB_IO_VERSION')" 2>/dev/null; then
  log "creating $KCIDB_VENV with kcidb-io $KCIDB_IO_VERSION"
  rm -rf "$KCIDB_VENV"
  /usr/bin/python3 -m venv "$KCIDB_VENV"
  "$KCIDB_VENV/bin/pip" install -q --disable-pip-version-check "kcidb-io==$KCIDB_IO_VERSION"
  "$KCIDB_VENV/bin/python3" -c "import kcidb_io; kcidb_io.schema.V5_3" \
    || die "kcidb-io $KCIDB_IO_VERSION installed but does not provide schema v5.3"
fi

log "ok: $(qemu-system-s390x --version | head -1); $(/usr/bin/rustc --version); $(s390x-linux-gnu-gcc --version | head -1)"
