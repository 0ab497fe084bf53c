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
failed=""
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' |
	sed 's|^\./||; s|/[^/]*_test.go:func | |' | sort -u)
bindir=$(mktemp -d)
trap 'rm -rf "$out" "$bindir"' EXIT
cache=$($GO env GOCACHE)/fuzz
# fuzz PKG NAME TIME: one run, with the package's instrumented test binary
# (built once per package: linking is most of a short run's cost); its
# output is kept in $out. It runs in the package directory, as go test
# does, so the corpus is read from and crashers written to testdata/fuzz.
fuzz() {
	bin="$bindir/$(echo "$1" | tr / _).test"
	if [ ! -x "$bin" ]; then
		$GO test -c -fuzz=. -o "$bin" "./$1" || return 1
	fi
	(cd "$1" && "$bin" -test.run '^$' -test.fuzz "^$2\$" -test.fuzztime "$3" -test.parallel 1 \
		-test.fuzzcachedir "$cache/$($GO list "./$1")") >"$out" 2>&1
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
