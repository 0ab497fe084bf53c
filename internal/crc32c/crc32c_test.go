package crc32c

import (
	"math/rand/v2"
	"testing"
)

func TestCombineMatchesWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sizes := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {100, 65536}, {65536, 65536}, {3, 1 << 20}, {777, 12345}} {
		a, b := make([]byte, sizes[0]), make([]byte, sizes[1])
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := Checksum(append(append([]byte{}, a...), b...))
		if got := Combine(Checksum(a), Checksum(b), int64(len(b))); got != want {
			t.Errorf("sizes %v: Combine = %08x, want %08x", sizes, got, want)
		}
	}
}

func BenchmarkCombine64K(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Combine(0x12345678, 0x9abcdef0, 65536)
	}
}

func TestShiftMatchesCombine(t *testing.T) {
	for _, n := range []int64{1, 4096, 65536, 1 << 20} {
		s := NewShift(n)
		for _, pair := range [][2]uint32{{0, 0}, {1, 2}, {0xdeadbeef, 0x12345678}, {0xffffffff, 0}} {
			if got, want := s.Combine(pair[0], pair[1]), Combine(pair[0], pair[1], n); got != want {
				t.Errorf("n=%d %v: %08x want %08x", n, pair, got, want)
			}
		}
	}
}

func BenchmarkShiftCombine(b *testing.B) {
	s := NewShift(65536)
	for i := 0; i < b.N; i++ {
		s.Combine(uint32(i), 0x9abcdef0)
	}
}
