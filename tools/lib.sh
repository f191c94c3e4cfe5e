# shellcheck shell=bash
# Common settings for the tools/ commands. Sourced, not run.
#
# Everything large (base package, kernel trees, build dirs, venv) lives under
# $CACHE, outside the repo, so rebuilds are incremental and the repo stays small.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmabuf-series}

# The default base: Debian's linux-source-7.3 binary package (upstream 7.3.4
# plus Debian's patches). Pinned here and nowhere else.
BASE_PKG=linux-source-7.3
BASE_PKG_VERSION=7.3.4-1~bpo13+1
BASE_SUITE=trixie-backports
BASE_MIRROR=http://deb.debian.org/debian
BASE_NAME=linux-7.3.4-debian

# Pinned userspace tools.
VIRTME_NG_VERSION=1.42
B4_VERSION=0.16.0
BINDGEN_VERSION=0.73.0

VENV=$CACHE/venv
BASE_GIT=$CACHE/base            # git repo: base commit (+ series branch)
# With KDIR=<your tree>, the series gets a work tree (a git worktree of
# KDIR) and build dirs of its own: yours is not touched, ours not mixed up.
if [ -n "${KDIR:-}" ]; then
	KDIR=$(realpath "$KDIR")
	WORK=${WORK:-$CACHE/work-kdir}
	BUILD=$CACHE/build-kdir
else
	WORK=${WORK:-$CACHE/work}       # work tree the series is applied in
	BUILD=$CACHE/build              # O= build dirs, one per config
fi
LOGS=$CACHE/logs
RESULTS=$CACHE/results

# Rust toolchain: Debian's rustc-web (has rust-src), never rustup's.
# bindgen needs libclang >= 17: bookworm's default (14) is too old, use 19.
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
BINDGEN=${BINDGEN:-$HOME/.cargo/bin/bindgen}
MAKE_RUST=(RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
	   RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver
	   BINDGEN="$BINDGEN")
JOBS=${JOBS:-$(nproc)}
# Compiler options for a build; tools/build sets LLVM=-19 for the vm kernel
# (Rust and KASAN together need clang). Empty: gcc.
MAKE_CC=()

export PATH="$VENV/bin:$PATH"

say()  { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# The kernel tree the series is applied to, as a git work tree.
work_tree() {
	[ -d "$WORK/.git" ] || [ -f "$WORK/.git" ] ||
		die "no work tree at $WORK: run tools/series apply first"
	echo "$WORK"
}

# kmake DIR ARGS...: make in the work tree with the Rust toolchain options.
kmake() {
	local o=$1; shift
	make -C "$(work_tree)" O="$o" "${MAKE_RUST[@]}" ${MAKE_CC[@]+"${MAKE_CC[@]}"} -j"$JOBS" "$@"
}

# progress LABEL SECONDS STATUS_CMD... -- CMD...: run CMD; while it runs,
# print "LABEL: <elapsed> <STATUS_CMD's output>" every SECONDS seconds, so
# that no step is silent for minutes. Returns CMD's exit status.
progress() {
	local label=$1 every=$2 st=() pid t0=$SECONDS rc=0 n=0; shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do st+=("$1"); shift; done
	shift
	"$@" &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		sleep 1
		n=$((n + 1))
		if [ $n -ge "$every" ] && kill -0 $pid 2>/dev/null; then
			n=0
			info "$label: $(elapsed $((SECONDS - t0)))${st[0]+ $("${st[@]}" 2>/dev/null)}"
		fi
	done
	wait $pid || rc=$?
	return $rc
}

# logged LOG CMD...: CMD with its output to LOG (for progress' CMD).
logged() { local log=$1; shift; "$@" >"$log" 2>&1; }

# last_line FILE [PATTERN]: the last line of FILE (matching PATTERN), short.
last_line() {
	{ if [ -n "${2:-}" ]; then grep -a -- "$2" "$1"; else cat "$1"; fi; } 2>/dev/null |
		tail -1 | tr -d '\r' | cut -c1-100
}

elapsed() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# configure_frags SRC O FRAGMENT...: O/.config = allnoconfig + the fragments,
# regenerated only when the fragments changed (so builds stay incremental).
# Returns 0 if it (re)configured, 1 if the existing .config was kept.
configure_frags() {
	local src=$1 o=$2 sum; shift 2
	mkdir -p "$o"
	sum=$( (cat "$@"; echo "${MAKE_CC[*]:-gcc}") | sha256sum | cut -c1-16)
	if [ -f "$o/.config" ] && [ "$(cat "$o/.frag-sum" 2>/dev/null)" = "$sum" ]; then
		return 1
	fi
	make -C "$src" O="$o" "${MAKE_RUST[@]}" ${MAKE_CC[@]+"${MAKE_CC[@]}"} -s allnoconfig >/dev/null
	(cd "$src" && scripts/kconfig/merge_config.sh -m -O "$o" "$o/.config" "$@" \
		>"$LOGS/merge-config.log")
	make -C "$src" O="$o" "${MAKE_RUST[@]}" ${MAKE_CC[@]+"${MAKE_CC[@]}"} -s olddefconfig >/dev/null
	echo "$sum" >"$o/.frag-sum"
}
