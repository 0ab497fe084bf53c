#!/bin/sh
# Runs every native Go fuzz target for FUZZTIME each (default 5s), one after
# the other, one worker each (the machine is shared). `make test` runs it
# with the default; `make fuzz` with a longer FUZZTIME. A crash fails the
# run, and go test writes the input to the package's testdata/fuzz/FuzzX/,
# where it becomes part of the checked-in seed corpus once the bug is fixed.
set -eu
FUZZTIME=${FUZZTIME:-5s}
GO=${GO:-go}
cd "$(dirname "$0")/.."
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' | sed 's|^\./||; s|/[^/]*_test.go:func | |' | sort -u)
echo "$targets" | while read -r pkg name; do
	[ -n "$pkg" ] || continue
	echo "== fuzz ./$pkg $name for $FUZZTIME"
	$GO test -count=1 -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -parallel 1 "./$pkg"
done
