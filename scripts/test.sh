#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh Debian machine,
# then runs every test (unit, integration, UI) and the GUI smoke run under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."

# xvfb: a display for the real window; fonts-noto-cjk: the seed's Chinese output
# rendered in screenshots; bc, gawk, python3: used by presets and tests.
packages=()
command -v xvfb-run >/dev/null || packages+=(xvfb xauth)
command -v bc >/dev/null || packages+=(bc)
command -v awk >/dev/null || packages+=(gawk)
# The seed's nslookup session, answered offline by a dnsmasq the test starts itself.
command -v nslookup >/dev/null || packages+=(dnsutils)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || packages+=(dnsmasq-base)
command -v python3 >/dev/null || packages+=(python3)
fc-list 2>/dev/null | grep -qi 'cjk' || packages+=(fonts-noto-cjk fontconfig)
# The X client libraries winit loads at run time, and software GL (a fresh Debian has
# none of them); xclip and xdotool: the smoke run clicks "Copy all" and reads the clipboard.
for lib in libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2 libgl1-mesa-dri; do
  dpkg -s "$lib" >/dev/null 2>&1 || packages+=("$lib")
done
command -v xclip >/dev/null || packages+=(xclip)
command -v xdotool >/dev/null || packages+=(xdotool)
# xprop: the journey reads the window's class and icon.
command -v xprop >/dev/null || packages+=(x11-utils)
# GNU parallel: tests/parallel_compat.rs runs each invocation under it too.
command -v parallel >/dev/null || packages+=(parallel)
# The .deb's checks: its desktop entry validated, its manual page rendered.
command -v desktop-file-validate >/dev/null || packages+=(desktop-file-utils)
command -v man >/dev/null || packages+=(man-db)
# setpriv: tests/control.rs runs a client as another user (nobody), who must be refused.
command -v setpriv >/dev/null || packages+=(util-linux)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

export PATH="$PATH:/usr/sbin"  # dnsmasq lives there

# A single-node Slurm for tests/slurm.rs (4 slots, so a pool larger than 2 cores can be
# tried), stopped again at the end unless one was running already. Without root it is
# not started, and those tests say SKIPPED.
slurm_started=0
if ! scontrol ping 2>/dev/null | grep -q UP; then
  if [ "$(id -u)" -eq 0 ] && SLURM_SLOTS=4 bash scripts/slurm_up.sh; then
    slurm_started=1
  else
    echo "test.sh: no Slurm here; tests/slurm.rs will say SKIPPED"
  fi
fi
trap '[ "$slurm_started" = 1 ] && bash scripts/slurm_down.sh >/dev/null' EXIT
cargo test --locked
cargo build --locked
bash scripts/gui_smoke.sh
# The .deb built (cargo-deb), installed into a scratch root and checked.
bash scripts/install_check.sh
