#!/usr/bin/env bash
# Installs what one xtask command needs, and nothing that is already there or that the command
# does not run. Idempotent: a second run only checks and finishes in about a second.
#
#   scripts/setup.sh [--packages-only] GROUP...
#
# Groups (each xtask command asks for its own; `cargo xtask setup` for all of them):
#   demo      the pinned nightly (with rust-src) and bpf-linker that build the eBPF object,
#             Go (Debian's 1.19) and a C compiler for the example programs
#   test      demo's, plus what the test suite runs: Go 1.21 and 1.23 (bookworm-backports),
#             c++, objcopy, bpftrace, Prometheus, sqlite3, groff, a font, `file`, rustfmt and
#             clippy, the x86-64 musl target and a Debian 11 root (tests/integration/old_userland.rs)
#   build     demo's, plus both musl targets and the aarch64 cross linker (static binaries)
#   vm        QEMU for x86-64, a static busybox, cpio, curl, xz (vm-test; it runs test first)
#   arm64     build's, plus QEMU for arm64, the arm64 C library headers and Go 1.21 and 1.23
#             (vm-test --arch arm64)
#   bench     test's, plus GNU time, caddy, redis-server and redis-benchmark
#   fuzz      demo's, plus objcopy
#
# --packages-only: the Debian package steps alone (no rustup, bpf-linker or Debian 11 root);
# the fresh-machine check (cargo xtask fresh-machine) runs setup this way in a new Debian 12 root.
#
# A package whose companions already come from another suite is installed from that suite:
# the image this project runs on has qemu-utils from bookworm-backports, which breaks Debian 12's
# own QEMU (qemu-utils 10 `Breaks: qemu-system-common (< 1:8.0)`), so QEMU comes from backports
# there. A failed install names the packages, apt's reason and the command that needed them.
set -euo pipefail
# A bare CI environment may lack HOME; cargo, rustup and go all need it.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export PATH="$HOME/.cargo/bin:$PATH"

# The eBPF crate's nightly is pinned once, in its rust-toolchain.toml.
NIGHTLY="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../probe-ebpf/rust-toolchain.toml" 2>/dev/null || true)"
BPF_LINKER_VERSION="0.13.0"
TOOLS_DIR="${PROBE_TOOLS_DIR:-$HOME/.local/share/probe-tools}"
LLVM_PREFIX="$TOOLS_DIR/llvm"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

packages_only=false
groups=()
for arg in "$@"; do
  case "$arg" in
    --packages-only) packages_only=true ;;
    demo|test|build|vm|arm64|bench|fuzz) groups+=("$arg") ;;
    all) groups+=(demo test build vm arm64 bench fuzz) ;;
    *) die "unknown group '$arg'; groups: demo test build vm arm64 bench fuzz (or all)" ;;
  esac
done
[ ${#groups[@]} -gt 0 ] || die "name what to set up: scripts/setup.sh demo|test|build|vm|arm64|bench|fuzz|all"

# A group implies the groups it builds on.
declare -A want=()
add() { want[$1]=1; }
for g in "${groups[@]}"; do
  case "$g" in
    demo) add demo ;;
    test) add demo; add test ;;
    build) add demo; add build ;;
    vm) add demo; add test; add vm ;;
    arm64) add demo; add build; add arm64 ;;
    bench) add demo; add test; add bench ;;
    fuzz) add demo; add fuzz ;;
  esac
done
wants() { [ -n "${want[$1]:-}" ]; }
# Who asked, for error messages: the xtask command behind the widest group asked for.
who="scripts/setup.sh ${groups[*]}"
[ -z "${PROBE_SETUP_FOR:-}" ] || who="$PROBE_SETUP_FOR"

codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
backports="$codename-backports"

# ---- Debian packages -------------------------------------------------------------------------
# Each step: a list of `check=package` pairs, where check is a command on PATH or an absolute
# path (present: nothing to do), installed in one apt transaction of its own, so a package that
# cannot be installed breaks only the commands that need it.

apt_updated=false
apt_update() {
  $apt_updated && return 0
  local out
  if ! out="$(apt-get update -q -o Acquire::Retries=3 2>&1)"; then
    die "apt-get update failed for $who: $(printf '%s\n' "$out" | grep -E '^(E|W):' | head -3 | tr '\n' ' ')"
  fi
  apt_updated=true
}

present() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    dpkg:*) dpkg-query -W -f='${Status}' "${1#dpkg:}" 2>/dev/null | grep -q '^install ok installed' ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# The suite to install a package from: backports where its companions (already installed)
# came from a backports build (version `~bpoNN`), else the default.
suite_for() {
  local companion version
  for companion in "$@"; do
    version="$(dpkg-query -W -f='${Version}' "$companion" 2>/dev/null || true)"
    if [[ "$version" == *"~bpo"* ]]; then echo "$backports"; return; fi
  done
  echo ""
}

ensure_backports() {
  if ! grep -rqs -- "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    apt_update  # apt-cache policy lists the mirrors only once their lists are fetched
    local mirror
    mirror="$(apt-cache policy | awk -v s="$codename/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}')"
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt to add $backports from (needed by $who)"
    say "adding the $backports suite ($mirror)"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$backports" > /etc/apt/sources.list.d/probe-backports.sources
    apt_updated=false
  fi
}

# step NAME SUITE RECOMMENDS check=package...
# SUITE: "" (the default) or a suite name; RECOMMENDS: yes or no.
step() {
  local name="$1" suite="$2" recommends="$3"; shift 3
  local missing=() pair
  for pair in "$@"; do
    present "${pair%%=*}" || missing+=("${pair#*=}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "$name: present"
    return
  fi
  # One package may serve several checks.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
  local opts=(-y -q -o Acquire::Retries=3)
  [ "$recommends" = yes ] || opts+=(--no-install-recommends)
  local from=""
  if [ -n "$suite" ]; then
    ensure_backports
    opts+=(-t "$suite")
    from=" from $suite"
  fi
  apt_update
  say "$name: installing ${missing[*]}$from"
  local out
  if ! out="$(DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${missing[@]}" 2>&1)"; then
    local reason
    reason="$(printf '%s\n' "$out" | grep -E '^(E: | [^ ].* : |  +(Depends|Breaks|Conflicts): )' | head -6 | sed 's/^ *//' | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
    die "could not install ${missing[*]}$from ($name), which $who needs; apt: ${reason:-$(printf '%s\n' "$out" | tail -3 | tr '\n' ' ')}"
  fi
  for pair in "$@"; do
    present "${pair%%=*}" || die "${pair#*=} was installed but ${pair%%=*} is still missing ($name, for $who)"
  done
}

# demo: Go and a C compiler build the example programs.
wants demo && step "go and a C compiler" "" yes go=golang-go cc=gcc
if wants test || wants arm64; then
  # Go 1.21 and 1.23 beside Debian 12's 1.19: their prologues differ (1.17-1.20 bodies start
  # with SUBQ, 1.21+ with PUSHQ BP), so the Go targets are built and traced with each.
  step "go 1.21 and 1.23" "$backports" no /usr/lib/go-1.21/bin/go=golang-1.21-go /usr/lib/go-1.23/bin/go=golang-1.23-go
fi
if wants test; then
  # The C++ and stripped-binary tests, bpftrace for comparisons, the font of the PNGs that
  # tests/integration/outputs.rs renders from probe's SVGs, groff for the man page, Debian's sqlite3 (its code
  # in libsqlite3.so.0) for LIB:FUNC names, `file` to check the static binary.
  step "test tools" "" yes c++=g++ objcopy=binutils bpftrace=bpftrace \
    /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf=fonts-dejavu-core groff=groff-base
  step "test tools without recommends" "" no file=file sqlite3=sqlite3 debootstrap=debootstrap
  # tests/integration/containers.rs: podman runs the Go target and probe's own image in containers; runc
  # because crun (podman's default) refuses a hybrid cgroup layout with a controller in v2.
  step "containers" "" yes podman=podman runc=runc
  # cargo xtask test checks deploy/kubernetes with a validator installed from PyPI into a venv.
  step "python venv" "" no /usr/bin/python3=python3 dpkg:python3-venv=python3-venv
  # tests/integration/serve.rs: a real Prometheus scrapes probe (and promtool checks its text). Without
  # recommends (they add the node exporter); the package's service would only hold port 9090.
  if ! present prometheus; then
    step "prometheus" "" no prometheus=prometheus
    [ ! -d /run/systemd/system ] || systemctl disable --now prometheus >/dev/null 2>&1 || true
  else
    say "prometheus: present"
  fi
fi
if wants build || wants arm64; then
  # The aarch64 static binary is linked by Debian's cross gcc (Rust brings musl's libc and crt).
  step "aarch64 cross linker" "" no aarch64-linux-gnu-gcc=gcc-aarch64-linux-gnu file=file
fi
# QEMU in a transaction of its own, from the suite its companions came from
# (PROBE_QEMU_SUITE overrides: `default` for the release's own, as the fresh-machine check does to
# show what that does on this image).
qemu_suite="${PROBE_QEMU_SUITE:-$(suite_for qemu-utils qemu-system-common)}"
[ "$qemu_suite" != default ] || qemu_suite=""
if wants vm || wants arm64; then
  # The guests' initramfs: a static busybox, cpio; Debian's kernels: curl and xz.
  step "VM tools" "" no dpkg:busybox-static=busybox-static cpio=cpio curl=curl xz=xz-utils
fi
wants vm && step "QEMU for x86-64" "$qemu_suite" no qemu-system-x86_64=qemu-system-x86
if wants arm64; then
  step "QEMU for arm64" "$qemu_suite" no qemu-system-aarch64=qemu-system-arm
  # The arm64 guest's C targets are linked statically against the arm64 C library, whose
  # headers gcc-aarch64-linux-gnu only recommends.
  step "arm64 C library" "" no /usr/aarch64-linux-gnu/include/stdio.h=libc6-dev-arm64-cross
fi
if wants bench; then
  # GNU time; section 7's programs nobody here wrote: caddy (Go) and Redis (C) beside the test's
  # Prometheus, and redis-benchmark. Their services, where systemd runs, would only hold ports.
  step "bench tools" "" no /usr/bin/time=time /usr/bin/caddy=caddy /usr/bin/redis-server=redis-server \
    /usr/bin/redis-benchmark=redis-tools
  [ ! -d /run/systemd/system ] || systemctl disable --now caddy redis-server >/dev/null 2>&1 || true
fi
wants fuzz && step "fuzz tools" "" no objcopy=binutils

$packages_only && { say "done (packages only)"; exit 0; }

# ---- Rust pieces ------------------------------------------------------------------------------
if wants test; then
  # cargo xtask test checks formatting and runs clippy with the host toolchain.
  missing_components=()
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || missing_components+=("$component")
  done
  if [ ${#missing_components[@]} -gt 0 ]; then
    say "adding ${missing_components[*]} to the host toolchain"
    rustup component add "${missing_components[@]}"
  fi
fi

# Static (musl) binaries: x86-64 for tests/integration/old_userland.rs and `build`, aarch64 for `build` and
# the arm64 guest.
targets=()
{ wants test || wants build; } && targets+=(x86_64-unknown-linux-musl)
{ wants build || wants arm64; } && targets+=(aarch64-unknown-linux-musl)
missing_targets=()
for target in "${targets[@]}"; do
  rustup target list --installed 2>/dev/null | grep -qx "$target" || missing_targets+=("$target")
done
if [ ${#missing_targets[@]} -gt 0 ]; then
  say "adding Rust targets ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}"
elif [ ${#targets[@]} -gt 0 ]; then
  say "Rust targets ${targets[*]}: present"
fi

# tests/integration/old_userland.rs: a Debian 11 (glibc 2.31) userland, from Debian's packages. Made once
# (about a minute) under a temporary name, so an interrupted run leaves no half-made root.
if wants test; then
  BULLSEYE_ROOT="${PROBE_BULLSEYE_ROOT:-/var/tmp/probe-bullseye}"
  if [ ! -e "$BULLSEYE_ROOT/etc/debian_version" ]; then
    say "making a Debian 11 chroot at $BULLSEYE_ROOT (debootstrap --variant=minbase bullseye)"
    rm -rf "$BULLSEYE_ROOT.partial"
    debootstrap --variant=minbase bullseye "$BULLSEYE_ROOT.partial" http://deb.debian.org/debian >/dev/null \
      || die "debootstrap of Debian 11 into $BULLSEYE_ROOT.partial failed (for $who)"
    mv "$BULLSEYE_ROOT.partial" "$BULLSEYE_ROOT"
  else
    say "Debian 11 chroot $BULLSEYE_ROOT: present"
  fi
fi

# The eBPF object: every group builds probe.
[ -n "$NIGHTLY" ] || die "no channel in probe-ebpf/rust-toolchain.toml (the eBPF crate's pinned nightly)"
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
[ -n "$libllvm" ] || die "no libLLVM in $sysroot/lib; reinstall $NIGHTLY"
mkdir -p "$LLVM_PREFIX/lib"
ln -sfn "$libllvm" "$LLVM_PREFIX/lib/libLLVM.so"
ln -sfn "$libllvm" "$LLVM_PREFIX/lib/$(basename "$libllvm")"

installed_linker="$(bpf-linker --version 2>/dev/null || true)"
if [[ "$installed_linker" != *"$BPF_LINKER_VERSION"* ]]; then
  say "building bpf-linker $BPF_LINKER_VERSION against $(basename "$libllvm") (about 2 minutes)"
  LLVM_PREFIX="$LLVM_PREFIX" cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
    --no-default-features --features llvm-22 --force
else
  say "bpf-linker $BPF_LINKER_VERSION: present"
fi
say "done"
