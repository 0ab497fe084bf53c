package capability

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSkew is how far the verifier's clock may lag behind the issuer's:
// a capability is accepted until Expiry+Skew, a key until its retire time
// plus Skew. Keep server clocks within it (NTP keeps them within
// milliseconds); a verifier whose clock runs ahead by more than the
// capability lifetime refuses everything as expired.
const DefaultSkew = 30 * time.Second

// VerifyKey is a key a verifier accepts, until Retire (zero: no end).
type VerifyKey struct {
	Key
	Retire time.Time
}

// Verifier checks capabilities against the keys it was last given. It is
// safe for concurrent use; SetKeys swaps the whole set atomically.
type Verifier struct {
	skew time.Duration
	keys atomic.Pointer[map[uint32]*heldKey]
}

// heldKey is a key with a pool of HMAC states keyed with its secret: an
// HMAC made once and Reset costs no allocation per request.
type heldKey struct {
	VerifyKey
	macs sync.Pool
}

func (k *heldKey) checkMAC(token []byte) bool {
	m, _ := k.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, k.Secret)
	}
	m.Reset()
	m.Write(token[:bodySize])
	var buf [macSize]byte
	ok := hmac.Equal(m.Sum(buf[:0]), token[bodySize:])
	k.macs.Put(m)
	return ok
}

// NewVerifier returns a verifier with no keys (every check fails with
// ErrNoKeys until SetKeys) that tolerates skew of clock difference.
func NewVerifier(skew time.Duration) *Verifier {
	if skew < 0 {
		skew = 0
	}
	return &Verifier{skew: skew}
}

// SetKeys replaces the key set. Keys with short secrets are left out.
func (v *Verifier) SetKeys(keys []VerifyKey) {
	m := make(map[uint32]*heldKey, len(keys))
	for _, k := range keys {
		if len(k.Secret) >= MinSecret {
			m[k.ID] = &heldKey{VerifyKey: k}
		}
	}
	v.keys.Store(&m)
}

// HasKeys reports whether the verifier was given any key.
func (v *Verifier) HasKeys() bool {
	m := v.keys.Load()
	return m != nil && len(*m) > 0
}

// KeyIDs lists the ids of the keys held (for status and tests).
func (v *Verifier) KeyIDs() []uint32 {
	m := v.keys.Load()
	if m == nil {
		return nil
	}
	ids := make([]uint32, 0, len(*m))
	for id := range *m {
		ids = append(ids, id)
	}
	return ids
}

// Verify checks that token is a capability, signed with a current key,
// not expired at now, for chunk, allowing op. The error says precisely why
// not (for the audit log); callers must not pass that detail to the
// requester.
func (v *Verifier) Verify(token []byte, chunk uint64, op Op, now time.Time) (Capability, error) {
	m := v.keys.Load()
	if m == nil || len(*m) == 0 {
		return Capability{}, ErrNoKeys
	}
	c, err := Decode(token)
	if err != nil {
		return Capability{}, err
	}
	k, ok := (*m)[c.KeyID]
	if !ok || (!k.Retire.IsZero() && now.After(k.Retire.Add(v.skew))) {
		return c, fmt.Errorf("%w: key %d", ErrUnknownKey, c.KeyID)
	}
	// The signature first: nothing else in the token means anything until
	// it is known to come from the metadata service.
	if !k.checkMAC(token) {
		return c, ErrBadMAC
	}
	switch {
	case now.After(c.Expiry.Add(v.skew)):
		return c, fmt.Errorf("%w: at %s, %s ago", ErrExpired, c.Expiry.UTC().Format(time.RFC3339), now.Sub(c.Expiry).Round(time.Millisecond))
	case c.ChunkID != chunk:
		return c, fmt.Errorf("%w: names chunk %d, request is for %d", ErrWrongChunk, c.ChunkID, chunk)
	case c.Ops&op != op:
		return c, fmt.Errorf("%w: allows %s, request needs %s", ErrWrongOp, c.Ops, op)
	}
	return c, nil
}
