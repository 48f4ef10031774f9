#!/usr/bin/env bash
# Builds poolscope's .deb: the release binary, its manual page and shell completions
# (made by the binary from its own option definitions), the desktop entry and icon;
# prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked
out=target/package
mkdir -p "$out"
bin=target/release/poolscope
"$bin" manpage > "$out/poolscope.1"
for sub in run watch view; do "$bin" manpage "$sub" > "$out/poolscope-$sub.1"; done
"$bin" completions bash > "$out/poolscope.bash"
"$bin" completions zsh > "$out/_poolscope"
"$bin" completions fish > "$out/poolscope.fish"
# Stripped: the line tables the release profile keeps for profiling are 150 MB of it.
cargo deb --no-build --locked --strip --output target/debian/ | tail -n 1
