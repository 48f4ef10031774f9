#!/usr/bin/env bash
# Builds the .deb and installs it into a scratch root, then checks what a user gets:
# the desktop entry is valid and names an installed icon, the installed binary names
# the commit it was built from, the manual page renders, the completions load.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(bash scripts/package.sh | tail -n 1)
[ -f "$deb" ] || { echo "install_check: no .deb at '$deb'"; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
echo "install_check: $deb ($(du -h "$deb" | cut -f1)) into $root:"
(cd "$root" && find . -type f | sort | sed 's/^/  /')

desktop-file-validate "$root/usr/share/applications/poolscope.desktop"
icon=$(sed -n 's/^Icon=//p' "$root/usr/share/applications/poolscope.desktop")
ls "$root"/usr/share/icons/hicolor/*/apps/"$icon".* >/dev/null

version=$("$root/usr/bin/poolscope" --version)
commit=$(git rev-parse --short=12 HEAD)
case "$version" in
  *"commit $commit"*) echo "install_check: $version" ;;
  *) echo "install_check: '$version' does not name commit $commit"; exit 1 ;;
esac

for page in "$root"/usr/share/man/man1/poolscope*.1*; do
  man_text=$(MANWIDTH=100 man -l "$page" 2>&1)
  grep -q "poolscope" <<<"$man_text"
  echo "install_check: man -l $(basename "$page"): $(wc -l <<<"$man_text") lines"
done
run_page=$(MANWIDTH=100 man -l "$root"/usr/share/man/man1/poolscope-run.1*)
grep -q -- "--jobs" <<<"$run_page" || { echo "install_check: poolscope-run(1) lacks the options"; exit 1; }
grep -q -- ":::" <<<"$run_page" || { echo "install_check: poolscope-run(1) lacks the command line"; exit 1; }

# The bash completion defines a completion for poolscope and offers `run`.
bash -c "source '$root/usr/share/bash-completion/completions/poolscope' && complete -p poolscope" >/dev/null
words=$(bash -c "source '$root/usr/share/bash-completion/completions/poolscope'
  COMP_WORDS=(poolscope r); COMP_CWORD=1; COMP_LINE='poolscope r'; COMP_POINT=11
  _poolscope poolscope r poolscope; printf '%s\n' \"\${COMPREPLY[@]}\"")
grep -qx run <<<"$words" || { echo "install_check: bash completion of 'poolscope r' gave: $words"; exit 1; }
test -s "$root/usr/share/zsh/vendor-completions/_poolscope"
test -s "$root/usr/share/fish/vendor_completions.d/poolscope.fish"
echo "install_check: passed"
