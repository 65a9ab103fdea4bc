#!/bin/sh
# The generated man pages (docs/CMakeLists.txt) render without a groff
# warning and carry what their sources say: every option of the --help, the
# hand-written sections, and for scribectl each command's own help.
#   man_test.sh BUILD_DIR
set -eu
docs=$1/docs
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v man >/dev/null || fail "man is missing (apt-get install man-db groff)"
command -v groff >/dev/null || fail "groff is missing (apt-get install groff)"
# groff -ww reports every warning (man -l alone shows none); first make sure
# it does here, on a page with a deliberate mistake.
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
printf '.TH X 8\n.SH NAME\nx \\- y\n.XX undefined\n' >"$bad"
[ -n "$(groff -ww -z -man -Tutf8 "$bad" 2>&1)" ] || fail "groff -ww does not report warnings here"
for page in scribefs scribectl; do
  f=$docs/$page.8
  [ -s "$f" ] || fail "$f was not generated (is help2man installed?)"
  err=$(groff -ww -z -man -Tutf8 "$f" 2>&1) || fail "groff $f failed: $err"
  [ -z "$err" ] || fail "groff warnings for $page(8): $err"
  err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>&1 >/dev/null) || fail "man -l $f failed: $err"
  [ -z "$err" ] || fail "man -l $page(8) said: $err"
  text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>/dev/null | col -b)
  for want in "NAME" "SYNOPSIS" "FILES" "EXIT STATUS" "SEE ALSO" "--state-dir"; do
    echo "$text" | grep -qi -- "$want" || fail "$page(8) lacks '$want'"
  done
done
text=$(MANWIDTH=80 man -l "$docs/scribefs.8" 2>/dev/null | col -b)
for want in "--metrics-listen" "--target" "MONITORING"; do
  echo "$text" | grep -q -- "$want" || fail "scribefs(8) lacks '$want'"
done
text=$(MANWIDTH=80 man -l "$docs/scribectl.8" 2>/dev/null | col -b)
for want in "COMMANDS" "checkpoint" "--pre CMD" "restore" "--quick"; do
  echo "$text" | grep -q -- "$want" || fail "scribectl(8) lacks '$want'"
done
echo "man pages ok"
