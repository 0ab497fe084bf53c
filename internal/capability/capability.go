// Package capability implements Strata's shard capabilities: short-lived
// tokens, signed by the metadata service, that allow named operations on the
// shards of one chunk. A dataserver serves a shard request only with a valid
// capability for the request's chunk and operation, so knowing a chunk id is
// not enough to read, overwrite or delete its data.
//
// Encoding (version 1, 54 bytes, big-endian):
//
//	offset  size  field
//	0       1     version (1)
//	1       4     key id
//	5       1     operations (bit set of Op)
//	6       8     expiry, unix milliseconds
//	14      8     chunk id
//	22      32    HMAC-SHA256(key, bytes 0..21)
//
// A capability covers every shard of its chunk: a degraded read or a
// rebuild needs any k of them, and the layout that names the chunk names
// all its shards anyway.
package capability

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Op is a set of shard operations.
type Op uint8

// Operations a capability may allow.
const (
	OpRead    Op = 1 << iota // ReadShard and StatShard
	OpWrite                  // WriteShard
	OpDelete                 // DeleteShard
	OpRebuild                // Repair.RebuildShard
	opAll     = OpRead | OpWrite | OpDelete | OpRebuild
)

func (o Op) String() string {
	names := []string{"read", "write", "delete", "rebuild"}
	s := ""
	for i, n := range names {
		if o&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	if o&^opAll != 0 {
		s += fmt.Sprintf("|0x%02x", uint8(o&^opAll))
	}
	if s == "" {
		return "none"
	}
	return s
}

const (
	// Version is the encoding version this package writes.
	Version = 1
	// Size is the length of an encoded version-1 capability.
	Size     = bodySize + macSize
	bodySize = 22
	macSize  = sha256.Size
	// MinSecret is the shortest key accepted.
	MinSecret = 16
)

// Why a capability is refused. Dataservers answer every one of them with
// the same PermissionDenied message, and record the precise reason in the
// audit log.
var (
	ErrMissing    = errors.New("capability: missing")
	ErrMalformed  = errors.New("capability: malformed")
	ErrUnknownKey = errors.New("capability: unknown or retired key")
	ErrBadMAC     = errors.New("capability: bad signature")
	ErrExpired    = errors.New("capability: expired")
	ErrWrongChunk = errors.New("capability: for another chunk")
	ErrWrongOp    = errors.New("capability: operation not allowed")
	// ErrNoKeys means the verifier has no keys yet (a dataserver that has
	// not heard from the metadata service since it started): retryable.
	ErrNoKeys = errors.New("capability: no keys yet")
)

// Capability is the decoded content of a token.
type Capability struct {
	KeyID   uint32
	Ops     Op
	Expiry  time.Time // millisecond precision
	ChunkID uint64
}

// Key is one signing key.
type Key struct {
	ID     uint32
	Secret []byte
}

// Sign encodes c and signs it with key. The key id in c is replaced by
// key's.
func Sign(key Key, c Capability) ([]byte, error) {
	if len(key.Secret) < MinSecret {
		return nil, fmt.Errorf("capability: key %d: secret of %d bytes, need %d", key.ID, len(key.Secret), MinSecret)
	}
	return AppendSigned(nil, key, c), nil
}

// AppendSigned appends the signed encoding of c to dst. The key must hold
// at least MinSecret bytes (Sign checks it).
func AppendSigned(dst []byte, key Key, c Capability) []byte {
	start := len(dst)
	dst = appendBody(dst, key.ID, c)
	return appendMAC(dst, key.Secret, dst[start:])
}

// Signer signs many capabilities with one key, reusing one HMAC state (a
// layout of hundreds of chunks costs one key setup). Not safe for
// concurrent use.
type Signer struct {
	key Key
	mac hash.Hash
}

// NewSigner returns a Signer for key, which must hold at least MinSecret
// bytes.
func NewSigner(key Key) (*Signer, error) {
	if len(key.Secret) < MinSecret {
		return nil, fmt.Errorf("capability: key %d: secret of %d bytes, need %d", key.ID, len(key.Secret), MinSecret)
	}
	return &Signer{key: key, mac: hmac.New(sha256.New, key.Secret)}, nil
}

// Append appends the signed encoding of c (with the signer's key id) to
// dst.
func (s *Signer) Append(dst []byte, c Capability) []byte {
	start := len(dst)
	dst = appendBody(dst, s.key.ID, c)
	s.mac.Reset()
	s.mac.Write(dst[start:])
	return s.mac.Sum(dst)
}

func appendBody(dst []byte, keyID uint32, c Capability) []byte {
	dst = append(dst, Version)
	dst = binary.BigEndian.AppendUint32(dst, keyID)
	dst = append(dst, byte(c.Ops))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Expiry.UnixMilli()))
	return binary.BigEndian.AppendUint64(dst, c.ChunkID)
}

func appendMAC(dst, secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(dst)
}

// Decode parses a token without checking its signature: the result is
// untrusted until Verify. It reads nothing beyond Size bytes and refuses
// any other length.
func Decode(b []byte) (Capability, error) {
	if len(b) == 0 {
		return Capability{}, ErrMissing
	}
	if len(b) != Size {
		return Capability{}, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), Size)
	}
	if b[0] != Version {
		return Capability{}, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	ops := Op(b[5])
	if ops == 0 || ops&^opAll != 0 {
		return Capability{}, fmt.Errorf("%w: operations 0x%02x", ErrMalformed, b[5])
	}
	ms := binary.BigEndian.Uint64(b[6:14])
	if ms > 1<<62 {
		return Capability{}, fmt.Errorf("%w: expiry %d", ErrMalformed, ms)
	}
	return Capability{
		KeyID:   binary.BigEndian.Uint32(b[1:5]),
		Ops:     ops,
		Expiry:  time.UnixMilli(int64(ms)),
		ChunkID: binary.BigEndian.Uint64(b[14:22]),
	}, nil
}
