#!/bin/sh
# kbuild.sh FRAGMENT...: the one kernel builder shared by the oracle kit
# (tools/kernel-oracle/) and the VM kit (tools/vm/).
#
# Builds Linux 6.12 from Debian's linux-source-6.12 (KVER=6.12, the default),
# or Linux 7.3.4 from trixie-backports' linux-source-7.3 (KVER=7.3): `make tinyconfig`, then
# every FRAGMENT merged in order, then `olddefconfig`. Every `CONFIG_X=y` line
# of the fragments must survive olddefconfig (a line ending in `# optional`
# may be dropped); otherwise the build fails loudly before compiling.
#
# The result is cached OUTSIDE the clone, keyed by a hash of what decides the
# kernel: the source package version, the fragments' contents in order, and
# RECIPE below. A second run with the same inputs does not rebuild:
#   ${DMASPACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmaspace}/
#     linux-source-<KVER>-<debver>/ the unpacked source, shared by every kernel (kept clean: builds use O=)
#     debs/                         7.3's .deb, kept: backports replace versions
#     kernel-<hash>/build/          the object tree (O=), so modules can be built against it
#     kernel-<hash>/bzImage         the kernel
#     kernel-<hash>/config          its final .config
#     kernel-<hash>/kernelrelease
#     kernel-<hash>/build-seconds   wall time of the compile
#     kernel-<hash>/gen_init_cpio   the kernel's initramfs packer (no root needed), for both kits
#     kernel-<hash>/source          path of the source tree (for out-of-tree modules: make -C kernel-<hash>/build M=...)
#     kernel-<hash>/makeflags       the make variables the kernel was built with (ARCH=x86_64, LLVM=-19):
#                                   out-of-tree modules must be built with the same ones
#     kernel-<hash>/toolchain       (LLVM builds) rustc, bindgen and clang versions: Rust objects
#                                   only link with the rustc that built them, so a cached kernel
#                                   whose toolchain differs is rebuilt (incrementally)
# The last line on stdout is the kernel-<hash> directory; progress goes to stderr.
#
# Environment: KVER (6.12 or 7.3), JOBS (default 2), DMASPACE_CACHE, KSRC_TAR
# (default the Debian tarball), and for a Rust-enabled kernel:
#   LLVM=1       build with clang/lld 19 (`make LLVM=-19`; LLVM=1 if no clang-19 is
#                installed), as Rust-for-Linux requires; `make rustavailable` must pass.
#                LIBCLANG_PATH defaults to LLVM 19's library directory (for bindgen).
#   KSRC_PATCH=SCRIPT  build from a copy of the unpacked source (hard links,
#                linux-source-<KVER>-<debver>+<hash>/) on which SCRIPT ran once, with the
#                copy's path as its argument; SCRIPT must replace the files it changes
#                (never write through a hard link), so the shared source stays clean.
# Each of these enters the key only when set: the keys of plain gcc builds
# stay what they were.
set -eu
RECIPE="tinyconfig+fragments+olddefconfig;bzImage+modules;v1"
KVER=${KVER:-6.12}
# The one 7.3 this project is tested on. A newer backport replaces it in the
# archive: the .deb is kept in the cache, and without it the build stops.
PIN_7_3="7.3.4-1~bpo13+1"
JOBS=${JOBS:-2}
CACHE=${DMASPACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmaspace}
case "$KVER" in
  6.12) SRC_TAR=${KSRC_TAR:-/usr/src/linux-source-6.12.tar.xz} ;;
  7.3) SRC_TAR=${KSRC_TAR:-$CACHE/linux-source-7.3-$PIN_7_3.tar.xz} ;;
  *) echo "kbuild: KVER must be 6.12 or 7.3, not $KVER" >&2; exit 2 ;;
esac
[ $# -ge 1 ] || { echo "usage: kbuild.sh FRAGMENT..." >&2; exit 2; }
log() { echo "kbuild: $*" >&2; }
# Absolute fragment paths: the merge runs in the build directory.
n=$#
for f in "$@"; do
  [ -f "$f" ] || { log "no fragment $f"; exit 1; }
  set -- "$@" "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
done
shift "$n"

# --- tools -------------------------------------------------------------------
need_pkgs=""
[ "$KVER" != 6.12 ] || [ -f "$SRC_TAR" ] || need_pkgs="$need_pkgs linux-source-6.12"
for t in gcc make flex bison bc cpio python3 flock; do
  command -v $t >/dev/null || need_pkgs="$need_pkgs build-essential flex bison bc cpio python3 util-linux"
done
dpkg -s libelf-dev >/dev/null 2>&1 || need_pkgs="$need_pkgs libelf-dev"
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs="$need_pkgs libssl-dev"
if [ -n "$need_pkgs" ]; then
  log "apt-get install $need_pkgs"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_pkgs >&2
fi

# --- 7.3's source: trixie-backports, through a private apt setup -----------------
# (the system's sources stay as they are; the mirror is the machine's own)
if [ "$KVER" = 7.3 ] && [ ! -f "$SRC_TAR" ]; then
  case "$CACHE" in *" "*) log "DMASPACE_CACHE must not contain spaces: $CACHE"; exit 2 ;; esac
  deb="$CACHE/debs/linux-source-7.3_${PIN_7_3}_all.deb"
  if [ ! -f "$deb" ]; then
    apt="$CACHE/apt-trixie-backports"
    mkdir -p "$apt/lists/partial" "$apt/parts" "$CACHE/debs"
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} trixie-backports main" > "$apt/sources.list"
    # (word-split on purpose: the cache path has no spaces, checked above)
    O="-o Dir::Etc::sourcelist=$apt/sources.list -o Dir::Etc::sourceparts=$apt/parts -o Dir::State::Lists=$apt/lists"
    log "fetching linux-source-7.3 $PIN_7_3 from trixie-backports"
    # shellcheck disable=SC2086
    apt-get $O update >&2 || true
    # shellcheck disable=SC2086
    if ! (cd "$CACHE/debs" && apt-get $O download "linux-source-7.3=$PIN_7_3" >&2 2>/dev/null); then
      log "ERROR: linux-source-7.3 $PIN_7_3 is not in trixie-backports any more and no cache holds it ($deb)"
      exit 1
    fi
  fi
  log "extracting the source tarball from $deb"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/src/linux-source-7.3.tar.xz > "$SRC_TAR.tmp"
  mv "$SRC_TAR.tmp" "$SRC_TAR"
fi

# --- LLVM (Rust-for-Linux needs the kernel built with clang) ------------------------
KMAKE="ARCH=x86_64"
LLVM=${LLVM:-}
if [ -n "$LLVM" ]; then
  if [ "$LLVM" = 1 ] && command -v clang-19 >/dev/null; then LLVM=-19; fi
  KMAKE="$KMAKE LLVM=$LLVM"
  if [ -z "${LIBCLANG_PATH:-}" ] && [ -d /usr/lib/llvm-19/lib ]; then
    export LIBCLANG_PATH=/usr/lib/llvm-19/lib
  fi
fi
toolchain() { # what a Rust-enabled kernel was built with
  rustc --version 2>&1 | head -n 1
  bindgen --version 2>&1 | head -n 1
  case "$LLVM" in -*) "clang$LLVM" --version ;; */) "${LLVM}clang" --version ;; *) clang --version ;; esac 2>&1 | head -n 1
}
KSRC_PATCH=${KSRC_PATCH:-}
if [ -n "$KSRC_PATCH" ]; then
  [ -f "$KSRC_PATCH" ] || { log "no KSRC_PATCH script $KSRC_PATCH"; exit 1; }
  KSRC_PATCH=$(cd "$(dirname "$KSRC_PATCH")" && pwd)/$(basename "$KSRC_PATCH")
fi

# --- the key -----------------------------------------------------------------
if [ "$KVER" = 7.3 ]; then
  srcver=$PIN_7_3
else
  srcver=$(dpkg-query -W -f '${Version}' linux-source-6.12 2>/dev/null || true)
fi
[ -n "$srcver" ] || srcver="tar-$(stat -c %s-%Y "$SRC_TAR")"
key=$( {
  echo "$RECIPE"
  echo "source $srcver"
  for f in "$@"; do
    [ -f "$f" ] || { echo "kbuild: no fragment $f" >&2; exit 1; }
    echo "fragment"
    cat "$f"
  done
  [ -z "$LLVM" ] || echo "make LLVM=$LLVM"
  if [ -n "$KSRC_PATCH" ]; then echo "source patch"; cat "$KSRC_PATCH"; fi
} | sha256sum | cut -c1-16)
KDIR="$CACHE/kernel-$key"
KSRC_CLEAN="$CACHE/linux-source-$KVER-$srcver"
KSRC=$KSRC_CLEAN
if [ -n "$KSRC_PATCH" ]; then
  KSRC="$KSRC_CLEAN+$(sha256sum < "$KSRC_PATCH" | cut -c1-12)"
fi
mkdir -p "$CACHE"

stale_toolchain=""
if [ -n "$LLVM" ] && [ -f "$KDIR/toolchain" ] && [ "$(toolchain)" != "$(cat "$KDIR/toolchain")" ]; then
  stale_toolchain=1
  log "cached $KDIR was built with $(tr '\n' ' ' < "$KDIR/toolchain"); now $(toolchain | tr '\n' ' '): rebuilding"
fi
if [ -z "$stale_toolchain" ] && [ -f "$KDIR/bzImage" ] && [ -f "$KDIR/build/Module.symvers" ] && [ -x "$KDIR/gen_init_cpio" ] && [ -f "$KDIR/source" ]; then
  log "cached: $KDIR ($(cat "$KDIR/kernelrelease"), built in $(cat "$KDIR/build-seconds" 2>/dev/null || echo '?') s)"
  echo "$KDIR"
  exit 0
fi

# One builder per key at a time; one unpacker for the source.
exec 9>"$CACHE/.lock-$key"
flock 9

# --- the source (unpacked once, never configured in place) --------------------
if [ ! -f "$KSRC_CLEAN/Makefile" ]; then
  (
    exec 8>"$CACHE/.lock-source"
    flock 8
    if [ ! -f "$KSRC_CLEAN/Makefile" ]; then
      log "unpacking $SRC_TAR into $KSRC_CLEAN"
      tmp="$KSRC_CLEAN.tmp.$$"
      rm -rf "$tmp"; mkdir -p "$tmp"
      tar -C "$tmp" -xf "$SRC_TAR"
      mv "$tmp/linux-source-$KVER" "$KSRC_CLEAN"
      rmdir "$tmp"
    fi
  )
fi
# The patched copy: hard links to the clean tree, SCRIPT replaces what it changes.
if [ -n "$KSRC_PATCH" ] && [ ! -f "$KSRC/.patched" ]; then
  (
    exec 8>"$CACHE/.lock-source"
    flock 8
    if [ ! -f "$KSRC/.patched" ]; then
      log "patching a hard-linked copy of $KSRC_CLEAN with $KSRC_PATCH into $KSRC"
      tmp="$KSRC.tmp.$$"
      rm -rf "$tmp"
      cp -al "$KSRC_CLEAN" "$tmp"
      sh "$KSRC_PATCH" "$tmp" >&2
      touch "$tmp/.patched"
      rm -rf "$KSRC"
      mv "$tmp" "$KSRC"
    fi
  )
fi

# --- configure ----------------------------------------------------------------
B="$KDIR/build"
mkdir -p "$B"
log "configuring $KDIR"
if [ -n "$LLVM" ]; then
  # Rust needs rustc, rust-src, bindgen and libclang the kernel accepts.
  # shellcheck disable=SC2086
  ra=$(make -s -C "$KSRC" O="$B" $KMAKE rustavailable 2>&1) || true
  case "$ra" in
    *"Rust is available!"*) ;;
    *) log "ERROR: make $KMAKE rustavailable: Rust is not available: $(echo "$ra" | grep -v '^\*\*\*$' | head -n3 | tr '\n' ' ')"; exit 1 ;;
  esac
fi
# shellcheck disable=SC2086
make -s -C "$KSRC" O="$B" $KMAKE tinyconfig >&2
# merge_config.sh writes into the current directory's .config
(cd "$B" && "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$B" "$B/.config" "$@" >/dev/null)
# shellcheck disable=SC2086
make -s -C "$KSRC" O="$B" $KMAKE olddefconfig >&2

fail=0
for f in "$@"; do
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=y*) ;;
      *) continue ;;
    esac
    sym=${line%%=*}
    if ! grep -qx "$sym=y" "$B/.config"; then
      case "$line" in
        *"# optional"*) log "note: $sym (optional) is not set" ;;
        *) log "ERROR: $sym=y (from $(basename "$f")) is not in .config after olddefconfig"; fail=1 ;;
      esac
    fi
  done < "$f"
done
[ $fail = 0 ] || { log "FAILED: required options missing (see above)"; exit 1; }

# --- compile --------------------------------------------------------------------
log "building bzImage + modules with -j$JOBS (a few minutes on two cores)"
t0=$(date +%s)
# shellcheck disable=SC2086
nice -n 10 make -s -C "$KSRC" O="$B" $KMAKE -j"$JOBS" bzImage modules >&2
t1=$(date +%s)
# shellcheck disable=SC2086
make -s -C "$KSRC" O="$B" $KMAKE kernelrelease > "$KDIR/kernelrelease"
echo "$KMAKE" > "$KDIR/makeflags"
[ -z "$LLVM" ] || toolchain > "$KDIR/toolchain"
cp "$B/.config" "$KDIR/config"
echo $((t1 - t0)) > "$KDIR/build-seconds"
echo "$KSRC" > "$KDIR/source"
gcc -O2 -o "$KDIR/gen_init_cpio" "$KSRC/usr/gen_init_cpio.c"
cp "$B/arch/x86/boot/bzImage" "$KDIR/bzImage.tmp"
mv "$KDIR/bzImage.tmp" "$KDIR/bzImage"
log "OK: $(cat "$KDIR/kernelrelease") in $((t1 - t0)) s -> $KDIR/bzImage"
echo "$KDIR"
