#!/usr/bin/env bash
# Installs what probe needs to build and test, and nothing that is already there.
# Idempotent: a second run only checks and finishes in seconds.
#   - the pinned nightly (with rust-src) that builds the eBPF crate
#   - bpf-linker 0.13.0 linked against that nightly's own libLLVM (versions must match)
#   - Go (Debian's 1.19, and 1.21 and 1.23 from backports) and a C compiler for the test
#     targets, bpftrace for comparisons
#   - Prometheus and groff for the --serve and man page tests
set -euo pipefail
# A bare CI environment may lack HOME; cargo, rustup and go all need it.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export PATH="$HOME/.cargo/bin:$PATH"

NIGHTLY="nightly-2026-05-19"
BPF_LINKER_VERSION="0.13.0"
TOOLS_DIR="${PROBE_TOOLS_DIR:-$HOME/.local/share/probe-tools}"
LLVM_PREFIX="$TOOLS_DIR/llvm"


say() { printf 'setup: %s\n' "$*"; }

need_root_apt=()
command -v go  >/dev/null 2>&1 || need_root_apt+=(golang-go)
command -v cc  >/dev/null 2>&1 || need_root_apt+=(gcc)
command -v c++ >/dev/null 2>&1 || need_root_apt+=(g++)
command -v objcopy >/dev/null 2>&1 || need_root_apt+=(binutils)
command -v bpftrace >/dev/null 2>&1 || need_root_apt+=(bpftrace)
# The font of the labels in the PNGs tests/outputs.rs renders from probe's SVGs.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_root_apt+=(fonts-dejavu-core)
command -v groff >/dev/null 2>&1 || need_root_apt+=(groff-base)
# Installed without recommends (QEMU's would add a GUI and firmware for other machines;
# Prometheus's, the node exporter):
#   - cargo xtask vm-test: QEMU, a static busybox for the guest, cpio for its initramfs, and
#     curl/xz to fetch Debian's kernel packages;
#   - tests/serve.rs: a real Prometheus scrapes probe (and promtool checks its text).
need_plain_apt=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_plain_apt+=(qemu-system-x86)
# cargo xtask vm-test --arch arm64 (not run by CI).
command -v qemu-system-aarch64 >/dev/null 2>&1 || need_plain_apt+=(qemu-system-arm)
dpkg -s busybox-static >/dev/null 2>&1 || need_plain_apt+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need_plain_apt+=(cpio)
command -v curl >/dev/null 2>&1 || need_plain_apt+=(curl)
command -v xz >/dev/null 2>&1 || need_plain_apt+=(xz-utils)
# cargo xtask build: the aarch64 static binary is linked by Debian's cross gcc (Rust brings
# musl's libc and crt); `file` checks both binaries are static. tests/old_userland.rs runs the
# x86-64 one in a Debian 11 chroot made with debootstrap.
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_plain_apt+=(gcc-aarch64-linux-gnu)
command -v file >/dev/null 2>&1 || need_plain_apt+=(file)
command -v debootstrap >/dev/null 2>&1 || need_plain_apt+=(debootstrap)
new_prometheus=false
# Debian's sqlite3 (stripped, its code in libsqlite3.so.0): a real program for LIB:FUNC names.
command -v sqlite3 >/dev/null 2>&1 || need_plain_apt+=(sqlite3)
if ! command -v prometheus >/dev/null 2>&1; then need_plain_apt+=(prometheus); new_prometheus=true; fi
# Go 1.21 and 1.23 beside Debian 12's 1.19: Go's prologues differ by version (1.17-1.20 bodies
# start with SUBQ, 1.21+ with PUSHQ BP), so the Go targets are built and traced with each. They
# come from the bookworm-backports suite, added from the mirror this machine already uses.
need_backports=()
[ -x /usr/lib/go-1.21/bin/go ] || need_backports+=(golang-1.21-go)
[ -x /usr/lib/go-1.23/bin/go ] || need_backports+=(golang-1.23-go)
if [ ${#need_backports[@]} -gt 0 ]; then
  suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")-backports"
  if ! grep -rqs -- "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    codename="${suite%-backports}"
    apt-get update -qq  # apt-cache policy lists the mirrors only once their lists are fetched
    mirror="$(apt-cache policy | awk -v s="$codename/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}')"
    [ -n "$mirror" ] || { say "error: no Debian mirror found in /etc/apt to add $suite from" >&2; exit 1; }
    say "adding the $suite suite ($mirror) for ${need_backports[*]}"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$suite" > /etc/apt/sources.list.d/probe-backports.sources
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t "$suite" "${need_backports[@]}" >/dev/null
else
  say "go 1.21 and 1.23 (bookworm-backports): present"
fi
if [ ${#need_root_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_root_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_root_apt[@]}" >/dev/null
else
  say "go, cc, c++, binutils, bpftrace, fonts-dejavu-core, groff: present"
fi
if [ ${#need_plain_apt[@]} -gt 0 ]; then
  say "installing Debian packages without recommends: ${need_plain_apt[*]}"
  [ ${#need_root_apt[@]} -gt 0 ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_plain_apt[@]}" >/dev/null
else
  say "qemu, busybox-static, cpio, curl, xz, aarch64 gcc, file, debootstrap, prometheus: present"
fi
# The tests start their own Prometheus; the package's service, started where systemd runs,
# would only hold port 9090 on this machine.
if $new_prometheus && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# cargo xtask test checks formatting and runs clippy with the host toolchain.
missing_components=()
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || missing_components+=("$component")
done
if [ ${#missing_components[@]} -gt 0 ]; then
  say "adding ${missing_components[*]} to the host toolchain"
  rustup component add "${missing_components[@]}"
fi

# cargo xtask build: static (musl) binaries for x86-64 and aarch64.
missing_targets=()
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed 2>/dev/null | grep -qx "$target" || missing_targets+=("$target")
done
if [ ${#missing_targets[@]} -gt 0 ]; then
  say "adding Rust targets ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}"
else
  say "Rust targets x86_64-unknown-linux-musl, aarch64-unknown-linux-musl: present"
fi

# tests/old_userland.rs: a Debian 11 (glibc 2.31) userland, from Debian's packages. Made once
# (about a minute) under a temporary name, so an interrupted run leaves no half-made root.
BULLSEYE_ROOT="${PROBE_BULLSEYE_ROOT:-/var/tmp/probe-bullseye}"
if [ ! -e "$BULLSEYE_ROOT/etc/debian_version" ]; then
  say "making a Debian 11 chroot at $BULLSEYE_ROOT (debootstrap --variant=minbase bullseye)"
  rm -rf "$BULLSEYE_ROOT.partial"
  debootstrap --variant=minbase bullseye "$BULLSEYE_ROOT.partial" http://deb.debian.org/debian >/dev/null
  mv "$BULLSEYE_ROOT.partial" "$BULLSEYE_ROOT"
else
  say "Debian 11 chroot $BULLSEYE_ROOT: present"
fi

if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
  say "installing Rust $NIGHTLY with rust-src"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
elif ! rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to $NIGHTLY"
  rustup component add rust-src --toolchain "$NIGHTLY"
else
  say "$NIGHTLY with rust-src: present"
fi

# bpf-linker must use exactly the nightly's LLVM, or linking fails with "Invalid record".
sysroot="$(rustup run "$NIGHTLY" rustc --print sysroot)"
libllvm="$(ls "$sysroot"/lib/libLLVM.so* 2>/dev/null | head -n1 || true)"
if [ -z "$libllvm" ]; then
  say "error: no libLLVM in $sysroot/lib; reinstall $NIGHTLY" >&2
  exit 1
fi
mkdir -p "$LLVM_PREFIX/lib"
ln -sfn "$libllvm" "$LLVM_PREFIX/lib/libLLVM.so"
ln -sfn "$libllvm" "$LLVM_PREFIX/lib/$(basename "$libllvm")"

installed_linker="$(bpf-linker --version 2>/dev/null || true)"
if [[ "$installed_linker" != *"$BPF_LINKER_VERSION"* ]] || ! bpf-linker --version >/dev/null 2>&1; then
  say "building bpf-linker $BPF_LINKER_VERSION against $(basename "$libllvm") (about 2 minutes)"
  LLVM_PREFIX="$LLVM_PREFIX" cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
    --no-default-features --features llvm-22 --force
else
  say "bpf-linker $BPF_LINKER_VERSION: present"
fi
say "done"
