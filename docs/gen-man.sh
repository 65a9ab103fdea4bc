#!/bin/sh
# Makes a man page from a program's own --help (help2man), plus a
# hand-written include (FILES, EXIT STATUS, SEE ALSO, ...). With --commands,
# also a COMMANDS section with the --help of every subcommand the program's
# --help lists under "Subcommands:", so that the page cannot drift from the
# parser. Used by docs/CMakeLists.txt.
#
#   gen-man.sh PROGRAM NAME "one-line description" INCLUDE OUTPUT VERSION [--commands]
set -eu
prog=$1 name=$2 desc=$3 include=$4 out=$5 version=$6 commands=${7:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# help2man runs PROGRAM --help; a wrapper gives it the name it should print.
cat >"$tmp/$name" <<WRAP
#!/bin/sh
exec "$prog" "\$@"
WRAP
chmod +x "$tmp/$name"

cp "$include" "$tmp/include.h2m"
if [ "$commands" = "--commands" ]; then
  # roff: a leading . or ' starts a request, \ an escape.
  esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
  {
    printf '[COMMANDS]\n'
    "$prog" --help | sed -n '/^Subcommands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p' |
      while read -r cmd; do
        printf '.SS "%s"\n.nf\n' "$cmd"
        "$prog" "$cmd" --help | esc
        printf '.fi\n'
      done
  } >>"$tmp/include.h2m"
fi
help2man --no-info --section 8 --name "$desc" --version-string "$version" \
  --include "$tmp/include.h2m" --output "$out" "$tmp/$name"
