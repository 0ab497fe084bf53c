#!/bin/sh
# Runs every native Go fuzz target for FUZZTIME each (default 5s), one after
# the other, one worker each (the machine is shared). `make test` runs it
# with the default; `make fuzz` with a longer FUZZTIME. A crash fails the
# run, and go test writes the input to the package's testdata/fuzz/FuzzX/,
# where it becomes part of the checked-in seed corpus once the bug is fixed.
set -u
FUZZTIME=${FUZZTIME:-5s}
GO=${GO:-go}
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=""
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' |
	sed 's|^\./||; s|/[^/]*_test.go:func | |' | sort -u)
# fuzz PKG NAME TIME: one run; its output is kept in $out.
fuzz() {
	$GO test -count=1 -run '^$' -fuzz "^$2\$" -fuzztime "$3" -parallel 1 "./$1" >"$out" 2>&1
	rc=$?
	cat "$out"
	return $rc
}
for t in $(echo "$targets" | tr ' ' ':'); do
	pkg=${t%%:*} name=${t#*:}
	echo "== fuzz ./$pkg $name for $FUZZTIME"
	if fuzz "$pkg" "$name" "$FUZZTIME"; then
		continue
	fi
	# Go fails a run whose time ran out while it was still replaying the
	# corpus (a loaded machine), without any crash: give it once more time.
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input' "$out"; then
		echo "== $name: time ran out before fuzzing began (machine busy); once more with 30s"
		fuzz "$pkg" "$name" 30s && continue
	fi
	failed="$failed $pkg/$name"
done
if [ -n "$failed" ]; then
	echo "fuzz targets that failed:$failed"
	exit 1
fi
echo "all fuzz targets passed"
