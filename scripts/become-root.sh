# Sourced (from the repository root) by the scripts that need root (the lab boots machines): as root it does nothing; otherwise the script
# runs itself again through sudo, keeping the caller's Rust and Go toolchains (PATH, rustup's and cargo's homes:
# sudo resets HOME, and rustup's proxies then find no toolchain). A root shell without sudo needs nothing else.
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "$0: needs root (the lab boots machines); run it as root or install sudo" >&2; exit 1; }
  exec sudo env "PATH=$PATH" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" bash "scripts/$(basename "$0")" "$@"
fi
