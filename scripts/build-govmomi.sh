#!/usr/bin/env bash
# build-govmomi.sh — build govc and vcsim (govmomi 0.24.2) from Debian's source
# package, without the Go module proxy.
#
# Why: on our machines (developers and CI alike) the only reachable package
# sources are Debian's mirrors, PyPI and npm.  There is no Go module proxy and
# no GitHub, so `go install github.com/vmware/govmomi/govc@v0.24.2` cannot work,
# and upstream's prebuilt release binaries cannot be downloaded either.  Debian
# bookworm does ship govmomi 0.24.2 as the source package
# `golang-github-vmware-govmomi` (0.24.2-3), and every Go library that govc and
# vcsim import is packaged as a `golang-*-dev` package that installs its source
# under /usr/share/gocode.  So we:
#
#   1. add a deb-src entry for the configured Debian mirror (if none exists),
#      and run `apt-get update` only when something we need is not yet known;
#   2. install dpkg-dev + Debian's Go (golang-go, i.e. Go 1.19 on bookworm);
#   3. `apt-get source golang-github-vmware-govmomi` into a temp dir
#      (dpkg-source applies the Debian patches, among them the
#      x509.UnknownAuthorityError fix for newer Go);
#   4. install the golang-*-dev packages named in its debian/control
#      Build-Depends (google/uuid, kr/pretty and their dependencies);
#   5. build govc and vcsim in GOPATH mode (GO111MODULE=off, GOPROXY=off,
#      GOPATH=<tmp gopath>:/usr/share/gocode), CGO disabled as upstream does;
#   6. smoke-test the binaries, then move them atomically into the cache:
#        ${CONTENTLIB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contentlib}/govmomi-0.24.2/bin
#
# Later runs only check that the cached binaries exist and run, then exit.
# Usage:   BIN=$(bash scripts/build-govmomi.sh | tail -1)
# The bin directory is the last (only) line on stdout; all progress goes to
# stderr.  Any failure exits non-zero with a message naming the failed step.
# Needs root for apt (uses sudo when not root and sudo is available).

set -Eeuo pipefail

GOVMOMI_VERSION=0.24.2
SRC_PKG=golang-github-vmware-govmomi
# Dependencies govc/vcsim need even if debian/control could not be parsed.
FALLBACK_GO_DEPS=(golang-github-google-uuid-dev golang-github-kr-pretty-dev)
SRC_LIST=/etc/apt/sources.list.d/contentlib-src.sources

# Keep stdout for the final result only; everything else goes to stderr.
exec 3>&1 1>&2

PROG=build-govmomi
STEP="start"
log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR (step: %s): %s\n' "$PROG" "$STEP" "$*" >&2; exit 1; }
on_err() {
  local rc=$? line=$1
  # In a subshell / command substitution just propagate; the main shell reports.
  if [[ $BASHPID == "$$" ]]; then
    printf '[%s] ERROR: step "%s" failed (exit %s, line %s)\n' "$PROG" "$STEP" "$rc" "$line" >&2
  fi
  exit "$rc"
}
trap 'on_err $LINENO' ERR

if [[ -n "${CONTENTLIB_TOOLS_CACHE:-}" ]]; then
  CACHE_ROOT=$CONTENTLIB_TOOLS_CACHE
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
  CACHE_ROOT=$XDG_CACHE_HOME/contentlib
elif [[ -n "${HOME:-}" ]]; then
  CACHE_ROOT=$HOME/.cache/contentlib
else
  die "none of CONTENTLIB_TOOLS_CACHE, XDG_CACHE_HOME, HOME is set; cannot pick a cache directory"
fi
DEST=$CACHE_ROOT/govmomi-$GOVMOMI_VERSION
BIN=$DEST/bin

# True when $1/govc and $1/vcsim exist and govc runs and reports our version.
binaries_ok() {
  local dir=$1 out
  [[ -x "$dir/govc" && -x "$dir/vcsim" ]] || return 1
  out=$("$dir/govc" version 2>/dev/null) || return 1
  [[ "$out" == *"$GOVMOMI_VERSION"* ]]
}

# ---- fast path: already built ---------------------------------------------
if binaries_ok "$BIN"; then
  printf '%s\n' "$BIN" >&3
  exit 0
fi

STEP="prepare cache directory"
mkdir -p "$CACHE_ROOT"
CACHE_ROOT=$(cd "$CACHE_ROOT" && pwd -P)
DEST=$CACHE_ROOT/govmomi-$GOVMOMI_VERSION
BIN=$DEST/bin

# Serialise concurrent runs (apt and the final move); re-check under the lock.
STEP="acquire lock"
exec 9>"$CACHE_ROOT/.govmomi-$GOVMOMI_VERSION.lock"
if ! flock -w 3600 9; then die "timed out waiting for $CACHE_ROOT/.govmomi-$GOVMOMI_VERSION.lock"; fi
if binaries_ok "$BIN"; then
  log "another run finished the build meanwhile"
  printf '%s\n' "$BIN" >&3
  exit 0
fi

WORK=""
STAGE=""
cleanup() {
  [[ -n "$WORK" && -d "$WORK" ]] && rm -rf "$WORK"
  [[ -n "$STAGE" && -d "$STAGE" ]] && rm -rf "$STAGE"
  return 0
}
trap cleanup EXIT

START_TS=$(date +%s)
log "building govc + vcsim $GOVMOMI_VERSION from Debian source into $BIN"

# ---- privileges ------------------------------------------------------------
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  fi
fi
as_root() {
  if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
    die "need root for: $* (not root and sudo is not available)"
  fi
  "${SUDO[@]}" "$@"
}
export DEBIAN_FRONTEND=noninteractive

# ---- apt helpers -------------------------------------------------------------
APT_UPDATED=0
apt_update() {
  [[ $APT_UPDATED -eq 1 ]] && return 0
  log "apt-get update"
  as_root apt-get update -q || die "apt-get update failed"
  APT_UPDATED=1
}
pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}
pkg_has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  [[ -n "$c" && "$c" != "(none)" ]]
}
# Install the given packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  for p in "${missing[@]}"; do
    if ! pkg_has_candidate "$p"; then apt_update; break; fi
  done
  for p in "${missing[@]}"; do
    pkg_has_candidate "$p" || die "package $p is not available from the configured apt sources"
  done
  log "apt-get install ${missing[*]}"
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
}
# Newest available source version 0.24.2-* of $SRC_PKG (empty if none).
src_version() {
  apt-cache showsrc "$SRC_PKG" 2>/dev/null \
    | awk '/^Version:/ {print $2}' \
    | grep -E "^([0-9]+:)?${GOVMOMI_VERSION//./\\.}-" \
    | sort -V | tail -1 || true
}
have_deb_src() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] && grep -Eq '^[[:space:]]*deb-src[[:space:]]' "$f" && return 0
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && grep -Eiq '^[[:space:]]*Types:.*deb-src' "$f" && return 0
  done
  return 1
}

# ---- 1. deb-src entry ------------------------------------------------------
STEP="configure deb-src apt source"
if [[ -z "$(src_version)" ]] && ! have_deb_src; then
  tmp_src=$(mktemp)
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    # Same stanzas (URIs, Suites, Components, Signed-By) with Types: deb-src.
    awk '/^[[:space:]]*[Tt][Yy][Pp][Ee][Ss]:/ {print "Types: deb-src"; next} {print}' \
      /etc/apt/sources.list.d/debian.sources >"$tmp_src"
  elif [[ -f /etc/apt/sources.list ]] && grep -Eq '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
    tmp_list=$(mktemp)
    sed -nE 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list >"$tmp_list"
    SRC_LIST=/etc/apt/sources.list.d/contentlib-src.list
    rm -f "$tmp_src"; tmp_src=$tmp_list
  else
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    cat >"$tmp_src" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  log "adding deb-src entry $SRC_LIST"
  as_root install -m 0644 "$tmp_src" "$SRC_LIST" || die "cannot write $SRC_LIST"
  rm -f "$tmp_src"
  apt_update
fi
if [[ -z "$(src_version)" ]]; then
  apt_update
fi
SRC_VER=$(src_version)
[[ -n "$SRC_VER" ]] || die "apt knows no source package $SRC_PKG version $GOVMOMI_VERSION-* (is a deb-src entry for bookworm configured?)"
log "using source package $SRC_PKG $SRC_VER"

# ---- 2. dpkg-dev and Debian's Go -------------------------------------------
STEP="install dpkg-dev and golang-go"
apt_install dpkg-dev golang-go
GO=/usr/lib/go/bin/go
[[ -x "$GO" ]] || die "$GO (from Debian's golang-go) not found after install"

# ---- 3. fetch and unpack the Debian source ---------------------------------
STEP="apt-get source $SRC_PKG=$SRC_VER"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-govmomi.XXXXXX")
mkdir -p "$WORK/dl"
# Let apt's unprivileged _apt user write there (avoids the sandbox warning).
if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then
  chmod 0755 "$WORK"; chown _apt "$WORK/dl" || true
fi
( cd "$WORK/dl" && apt-get source -q "$SRC_PKG=$SRC_VER" ) || die "apt-get source $SRC_PKG=$SRC_VER failed"
SRCDIR=$(find "$WORK/dl" -mindepth 1 -maxdepth 1 -type d -name "$SRC_PKG-*" | head -1)
[[ -n "$SRCDIR" && -f "$SRCDIR/govc/main.go" && -f "$SRCDIR/vcsim/main.go" ]] \
  || die "unpacked source not found or incomplete under $WORK/dl"
[[ -f "$SRCDIR/.pc/applied-patches" || ! -s "$SRCDIR/debian/patches/series" ]] \
  || die "Debian patches were not applied (no .pc/applied-patches)"

# ---- 4. Go build dependencies from debian/control --------------------------
STEP="install Go build dependencies"
# Build-Depends field (with continuation lines) of the source stanza; keep
# golang-*-dev names (first alternative, no version/arch/profile qualifiers).
mapfile -t GO_DEPS < <(
  awk '/^Build-Depends(-Indep|-Arch)?:/ {f=1; sub(/^[^:]*:/, ""); print; next}
       f && /^[[:space:]]/ {print; next}
       {f=0} /^$/ {exit}' "$SRCDIR/debian/control" \
    | tr ',' '\n' | sed -E 's/\|.*//; s/[[(<].*//; s/:[a-z]+//; s/[[:space:]]//g' \
    | grep -E '^golang-.+-dev$' || true)
log "Go Build-Depends from debian/control: ${GO_DEPS[*]:-(none found)}"
mapfile -t GO_DEPS < <(printf '%s\n' "${GO_DEPS[@]}" "${FALLBACK_GO_DEPS[@]}" | sed '/^$/d' | sort -u)
apt_install "${GO_DEPS[@]}"

# ---- 5. build ---------------------------------------------------------------
STEP="go build"
GOPATH_DIR=$WORK/gopath
mkdir -p "$GOPATH_DIR/src/github.com/vmware"
mv "$SRCDIR" "$GOPATH_DIR/src/github.com/vmware/govmomi"
STAGE=$(mktemp -d "$CACHE_ROOT/.govmomi-$GOVMOMI_VERSION.tmp.XXXXXX")
mkdir -p "$STAGE/bin"

unset GOFLAGS GOROOT GOBIN
export GO111MODULE=off GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH="$GOPATH_DIR:/usr/share/gocode"
export GOCACHE="$WORK/gocache"
GO_VERSION=$("$GO" version)
log "toolchain: $GO_VERSION"
LDFLAGS="-s -w -X github.com/vmware/govmomi/govc/flags.GitVersion=$GOVMOMI_VERSION"
cd "$GOPATH_DIR/src/github.com/vmware/govmomi"
log "go build github.com/vmware/govmomi/govc"
"$GO" build -trimpath -ldflags "$LDFLAGS" -o "$STAGE/bin/govc" github.com/vmware/govmomi/govc \
  || die "go build github.com/vmware/govmomi/govc failed"
log "go build github.com/vmware/govmomi/vcsim"
"$GO" build -trimpath -ldflags "-s -w" -o "$STAGE/bin/vcsim" github.com/vmware/govmomi/vcsim \
  || die "go build github.com/vmware/govmomi/vcsim failed"
cd /

# ---- 6. smoke test and install atomically -----------------------------------
STEP="smoke-test built binaries"
govc_out=$("$STAGE/bin/govc" version) || die "built govc does not run"
[[ "$govc_out" == *"$GOVMOMI_VERSION"* ]] || die "govc version printed '$govc_out', expected $GOVMOMI_VERSION"
vcsim_help=$("$STAGE/bin/vcsim" -h 2>&1 || true)
[[ "$vcsim_help" == *"-l"* ]] || die "built vcsim -h printed no usage: $vcsim_help"
cat >"$STAGE/BUILDINFO" <<EOF
govmomi $GOVMOMI_VERSION from Debian source $SRC_PKG $SRC_VER
$GO_VERSION
GOPATH mode (GO111MODULE=off), deps: ${GO_DEPS[*]}
built $(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

STEP="install into $DEST"
if [[ -e "$DEST" ]]; then
  # A broken or partial cache entry (we hold the lock): move it aside first.
  old=$(mktemp -d "$CACHE_ROOT/.govmomi-$GOVMOMI_VERSION.old.XXXXXX")
  mv -T "$DEST" "$old/x"
  rm -rf "$old"
fi
chmod 0755 "$STAGE"
mv -T "$STAGE" "$DEST"
STAGE=""
binaries_ok "$BIN" || die "binaries in $BIN do not work after install"

log "done in $(( $(date +%s) - START_TS ))s: $govc_out; $GO_VERSION"
printf '%s\n' "$BIN" >&3
