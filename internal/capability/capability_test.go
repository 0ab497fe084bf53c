package capability

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var (
	testKey  = Key{ID: 7, Secret: bytes.Repeat([]byte{0xa5}, 32)}
	otherKey = Key{ID: 7, Secret: bytes.Repeat([]byte{0x5a}, 32)}
)

func newTestVerifier(keys ...Key) *Verifier {
	v := NewVerifier(DefaultSkew)
	var vk []VerifyKey
	for _, k := range keys {
		vk = append(vk, VerifyKey{Key: k})
	}
	v.SetKeys(vk)
	return v
}

func mustSign(t testing.TB, k Key, c Capability) []byte {
	t.Helper()
	b, err := Sign(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignDecodeRoundTrip(t *testing.T) {
	exp := time.UnixMilli(1_900_000_000_123)
	c := Capability{Ops: OpRead | OpRebuild, Expiry: exp, ChunkID: 1<<63 + 5}
	b := mustSign(t, testKey, c)
	if len(b) != Size {
		t.Fatalf("encoded %d bytes, want %d", len(b), Size)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	c.KeyID = testKey.ID
	if got != c || !got.Expiry.Equal(exp) {
		t.Fatalf("decoded %+v, want %+v", got, c)
	}
}

func TestVerifyRefusals(t *testing.T) {
	now := time.Now()
	v := newTestVerifier(testKey)
	good := Capability{Ops: OpRead | OpWrite, Expiry: now.Add(time.Minute), ChunkID: 42}
	tok := mustSign(t, testKey, good)
	if _, err := v.Verify(tok, 42, OpRead, now); err != nil {
		t.Fatalf("good capability refused: %v", err)
	}
	if _, err := v.Verify(tok, 42, OpRead|OpWrite, now); err != nil {
		t.Fatalf("good capability refused for both its ops: %v", err)
	}
	flipped := bytes.Clone(tok)
	flipped[14+7] ^= 1 // chunk id 42 -> 43 without re-signing
	expired := good
	expired.Expiry = now.Add(-DefaultSkew - time.Second)
	skewed := good
	skewed.Expiry = now.Add(-DefaultSkew / 2) // within tolerance
	cases := []struct {
		name  string
		tok   []byte
		chunk uint64
		op    Op
		want  error
	}{
		{"missing", nil, 42, OpRead, ErrMissing},
		{"truncated", tok[:Size-1], 42, OpRead, ErrMalformed},
		{"too long", append(bytes.Clone(tok), 0), 42, OpRead, ErrMalformed},
		{"forged with another secret", mustSign(t, otherKey, good), 42, OpRead, ErrBadMAC},
		{"tampered chunk id", flipped, 43, OpRead, ErrBadMAC},
		{"unknown key", mustSign(t, Key{ID: 8, Secret: testKey.Secret}, good), 42, OpRead, ErrUnknownKey},
		{"expired", mustSign(t, testKey, expired), 42, OpRead, ErrExpired},
		{"wrong chunk", tok, 43, OpRead, ErrWrongChunk},
		{"wrong op", tok, 42, OpDelete, ErrWrongOp},
	}
	for _, tc := range cases {
		if _, err := v.Verify(tc.tok, tc.chunk, tc.op, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := v.Verify(mustSign(t, testKey, skewed), 42, OpRead, now); err != nil {
		t.Errorf("capability expired less than the skew tolerance ago refused: %v", err)
	}
	if _, err := NewVerifier(0).Verify(tok, 42, OpRead, now); !errors.Is(err, ErrNoKeys) {
		t.Errorf("verifier without keys: got %v, want ErrNoKeys", err)
	}
}

func TestRetiredKeyRefused(t *testing.T) {
	now := time.Now()
	v := NewVerifier(time.Second)
	v.SetKeys([]VerifyKey{{Key: testKey, Retire: now.Add(-2 * time.Second)}, {Key: Key{ID: 9, Secret: otherKey.Secret}}})
	c := Capability{Ops: OpRead, Expiry: now.Add(time.Minute), ChunkID: 1}
	if _, err := v.Verify(mustSign(t, testKey, c), 1, OpRead, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("retired key: got %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(mustSign(t, Key{ID: 9, Secret: otherKey.Secret}, c), 1, OpRead, now); err != nil {
		t.Errorf("current key refused: %v", err)
	}
}

func TestSignRefusesShortSecret(t *testing.T) {
	if _, err := Sign(Key{ID: 1, Secret: []byte("short")}, Capability{Ops: OpRead}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

func TestOpString(t *testing.T) {
	if s := (OpRead | OpRebuild).String(); s != "read|rebuild" {
		t.Errorf("got %q", s)
	}
	if s := Op(0).String(); s != "none" {
		t.Errorf("got %q", s)
	}
}

// FuzzCapabilityDecode feeds arbitrary bytes to Decode and Verify: no
// panic, nothing accepted that was not signed with the key, and whatever
// decodes re-encodes to the same bytes.
func FuzzCapabilityDecode(f *testing.F) {
	now := time.UnixMilli(1_800_000_000_000)
	f.Add(mustSign(f, testKey, Capability{Ops: OpRead, Expiry: now.Add(time.Minute), ChunkID: 1}))
	f.Add(mustSign(f, otherKey, Capability{Ops: OpWrite | OpDelete, Expiry: now, ChunkID: 99}))
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add(bytes.Repeat([]byte{0xff}, Size))
	v := newTestVerifier(testKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if _, verr := v.Verify(b, 1, OpRead, now); verr == nil {
				t.Fatalf("Verify accepted bytes Decode refused: %v", err)
			}
			return
		}
		again := AppendSigned(nil, Key{ID: c.KeyID, Secret: testKey.Secret}, c)
		if !bytes.Equal(again[:bodySize], b[:bodySize]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again[:bodySize], b[:bodySize])
		}
		if _, verr := v.Verify(b, c.ChunkID, c.Ops, now); verr == nil && !bytes.Equal(again, b) {
			t.Fatalf("accepted a token not signed with the key: %x", b)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	v := newTestVerifier(testKey)
	tok := mustSign(b, testKey, Capability{Ops: OpRead, Expiry: now.Add(time.Hour), ChunkID: 42})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, 42, OpRead, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign is the metaserver's cost per chunk of a layout (one
// Signer per response).
func BenchmarkSign(b *testing.B) {
	c := Capability{Ops: OpRead, Expiry: time.Now().Add(time.Hour), ChunkID: 42}
	s, err := NewSigner(testKey)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, Size)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.Append(buf[:0], c)
	}
}

func TestSignerMatchesSign(t *testing.T) {
	c := Capability{Ops: OpWrite, Expiry: time.UnixMilli(1_850_000_000_000), ChunkID: 9}
	s, err := NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Append(nil, c)
	if !bytes.Equal(first, mustSign(t, testKey, c)) || !bytes.Equal(s.Append(nil, c), first) {
		t.Fatal("Signer and Sign disagree, or a reused Signer changed its output")
	}
	if _, err := NewSigner(Key{ID: 1, Secret: []byte("x")}); err == nil {
		t.Fatal("NewSigner accepted a 1-byte secret")
	}
}
