#!/usr/bin/env bash
# Builds the guest from source: QuickJS (javy) for wasm32-wasip1, pre-initialised
# with Wizer and wrapped as a component. Writes host/guest/scriptbox-guest.wasm,
# or the path given as $1.
#
# Needs: rustup target wasm32-wasip1; Debian packages clang-22 and wasi-libc
# (only wasi-libc's C headers are used; rustc links with its own rust-lld and
# libc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/host/guest/scriptbox-guest.wasm}
target_dir=$root/target/guest

# A sysroot made of links to Debian's wasi-libc, so nothing under /usr changes.
sysroot=$target_dir/wasi-sysroot
mkdir -p "$sysroot/lib"
ln -sfn /usr/include/wasm32-wasi "$sysroot/include"
ln -sfn /usr/lib/wasm32-wasi "$sysroot/lib/wasm32-wasi"

export RQUICKJS_SYS_NO_WASI_SDK=1 # rquickjs-sys would otherwise download wasi-sdk
# QuickJS is C. Clang 22 (rustc's LLVM major version) compiles its
# interpreter to faster wasm than Debian's default clang 14: fib(25) takes
# 2.6x native QuickJS instead of 3.1x (docs/sandbox.md, "Fuel and time").
# bindgen loads the same version's libclang, named so the build does not
# depend on which other clangs are installed.
export CC_wasm32_wasip1=clang-22
export LIBCLANG_PATH=/usr/lib/llvm-22/lib
# Paths are remapped so the artifact does not depend on where the tree lives.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
remap="-ffile-prefix-map=$root=/scriptbox -ffile-prefix-map=$cargo_home=/cargo"
export CFLAGS_wasm32_wasip1="--sysroot=$sysroot $remap"
export BINDGEN_EXTRA_CLANG_ARGS_wasm32_wasip1="--sysroot=$sysroot"
# 4 MiB of shadow stack (C locals and QuickJS's argument buffers). QuickJS-ng
# has no stack check on WASI, so deep recursion is stopped by the host's wasm
# stack limit (8 MiB, host/src/sandbox/engine.rs); each JS call takes about 4x
# more wasm stack than shadow stack, so the wasm limit is reached first and the
# run ends as `stack_overflow`.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-arg=-zstack-size=4194304 --remap-path-prefix=$root=/scriptbox --remap-path-prefix=$cargo_home=/cargo"

(cd "$root/guest-js-engine/runtime" &&
  cargo build --release --locked --target wasm32-wasip1 --target-dir "$target_dir")
core=$target_dir/wasm32-wasip1/release/scriptbox_guest.wasm

# Wizer + componentize run on the host. The whole workspace is built in the
# dev profile, test targets included, so the builder shares one wasmtime build
# with the host and the tests (`cargo test --workspace` then rebuilds nothing).
# The snapshot does not depend on the builder's own build profile.
(cd "$root" && cargo build --quiet --locked --workspace --all-targets)
"$root/target/debug/scriptbox-guest-builder" "$core" "$out"
