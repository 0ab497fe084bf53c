package client

import (
	"bytes"
	"testing"
)

// TestVec checks the pieces WriteAtv cuts a buffer list into: every
// [lo, hi) of the concatenation, whether it falls inside one buffer
// (shared, not copied) or straddles several.
func TestVec(t *testing.T) {
	v := vec{[]byte("abc"), nil, []byte("defg"), []byte("h")}
	all := []byte("abcdefgh")
	if v.len() != int64(len(all)) {
		t.Fatalf("len %d, want %d", v.len(), len(all))
	}
	for lo := 0; lo <= len(all); lo++ {
		for hi := lo; hi <= len(all); hi++ {
			sub := v.sub(int64(lo), int64(hi))
			if got := sub.bytes(); !bytes.Equal(got, all[lo:hi]) {
				t.Fatalf("sub(%d, %d) = %q, want %q", lo, hi, got, all[lo:hi])
			}
			if sub.len() != int64(hi-lo) {
				t.Fatalf("sub(%d, %d) has length %d", lo, hi, sub.len())
			}
		}
	}
	// Inside one buffer: the same memory, no copy.
	if got := v.sub(4, 6).bytes(); &got[0] != &v[2][1] {
		t.Fatal("a range inside one buffer was copied")
	}
}
