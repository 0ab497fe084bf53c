// Package crc32c is CRC-32C (Castagnoli), the checksum of every Strata
// shard block and chunk, plus Combine: the CRC of a concatenation from the
// CRCs of its parts, so a checksum over a whole can be had without a second
// pass over the bytes.
package crc32c

import "hash/crc32"

// Table is the Castagnoli table (hardware-accelerated where available).
var Table = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, Table) }

// Update adds b to crc.
func Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, Table, b) }

// castagnoliPoly is the reversed Castagnoli polynomial.
const castagnoliPoly = 0x82f63b78

// Combine returns the CRC-32C of A||B given crcA = CRC(A), crcB = CRC(B)
// and lenB = len(B). It is zlib's crc32_combine: it applies lenB zero bytes
// to crcA with GF(2) matrix squaring, in O(log lenB) steps.
func Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	var even, odd [32]uint32
	odd[0] = castagnoliPoly // operator for one zero bit
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four zero bits
	for {
		gf2Square(&even, &odd) // first time: one zero byte
		if lenB&1 != 0 {
			crcA = gf2Times(&even, crcA)
		}
		lenB >>= 1
		if lenB == 0 {
			break
		}
		gf2Square(&odd, &even)
		if lenB&1 != 0 {
			crcA = gf2Times(&odd, crcA)
		}
		lenB >>= 1
		if lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func gf2Times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(square, mat *[32]uint32) {
	for n := 0; n < 32; n++ {
		square[n] = gf2Times(mat, mat[n])
	}
}

// Shift combines CRCs for one fixed length of B. Building it costs what one
// Combine does; each use then costs 32 steps instead of O(log n) matrix
// squarings, which matters when combining many equal blocks.
type Shift struct {
	mat [32]uint32
	n   int64
}

// NewShift prepares Combine for parts of n bytes.
func NewShift(n int64) *Shift {
	s := &Shift{n: n}
	for i := 0; i < 32; i++ {
		// Column i of the operator is the CRC shift of the unit vector.
		s.mat[i] = Combine(1<<i, 0, n)
	}
	return s
}

// Combine returns the CRC of A||B where len(B) is the Shift's length.
func (s *Shift) Combine(crcA, crcB uint32) uint32 {
	return gf2Times(&s.mat, crcA) ^ crcB
}

// Len is the length of B this Shift is for.
func (s *Shift) Len() int64 { return s.n }
