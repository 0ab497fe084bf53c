package bootctl

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// BMC passwords are stored encrypted at rest: AES-256-GCM with a key the
// boot controller and the operator's commands are given as a file
// (`strata bootctl keygen`), never stored in the metadata service. The
// node's name is the additional authenticated data, so a sealed password
// copied into another node's record does not open. A sealed value names
// the id of its key (a hash prefix, not the key), so a wrong key is told
// apart from a damaged value.

// Errors of the BMC password key.
var (
	ErrNoBMCKey    = errors.New("bootctl: BMC password is stored encrypted and no key was given (--bmc-key-file or STRATA_BMC_KEY_FILE; strata bootctl keygen makes one)")
	ErrWrongBMCKey = errors.New("bootctl: BMC password was encrypted with another key")
)

const (
	keyBytes   = 32
	sealPrefix = "aes256gcm:v1:"
)

// Key encrypts and decrypts BMC passwords.
type Key struct {
	aead cipher.AEAD
	id   string
}

// NewKey makes a Key of 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != keyBytes {
		return nil, fmt.Errorf("bootctl: BMC key must be %d bytes, got %d", keyBytes, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("strata-bmc-key-id:"), raw...))
	return &Key{aead: aead, id: hex.EncodeToString(sum[:4])}, nil
}

// ID names the key without revealing it (8 hex digits).
func (k *Key) ID() string { return k.id }

// WriteKeyFile creates a new random key in path (mode 0600, hex encoded).
// It refuses to replace an existing file unless force is set: losing the
// key loses every stored BMC password.
func WriteKeyFile(path string, force bool) (*Key, error) {
	raw := make([]byte, keyBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("bootctl: generate key: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bootctl: write BMC key: %w", err)
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(raw)); err != nil {
		f.Close()
		return nil, fmt.Errorf("bootctl: write BMC key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("bootctl: write BMC key %s: %w", path, err)
	}
	return NewKey(raw)
}

// LoadKeyFile reads a key written by WriteKeyFile. The file must not be
// readable by group or others.
func LoadKeyFile(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("bootctl: BMC key file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC key file: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != keyBytes {
		return nil, fmt.Errorf("bootctl: BMC key file %s: want %d hex-encoded bytes (strata bootctl keygen)", path, keyBytes)
	}
	return NewKey(raw)
}

// seal encrypts the password of node.
func (k *Key) seal(node, password string) (string, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("bootctl: seal BMC password: %w", err)
	}
	ct := k.aead.Seal(nonce, nonce, []byte(password), []byte(node))
	return sealPrefix + k.id + ":" + base64.StdEncoding.EncodeToString(ct), nil
}

// open decrypts a sealed password of node.
func (k *Key) open(node, sealed string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, sealPrefix)
	id, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return "", fmt.Errorf("bootctl: node %s: stored BMC password is not in a known format", node)
	}
	if id != k.id {
		return "", fmt.Errorf("node %s: %w (key %s; the key given is %s)", node, ErrWrongBMCKey, id, k.id)
	}
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(ct) < k.aead.NonceSize() {
		return "", fmt.Errorf("bootctl: node %s: stored BMC password is damaged", node)
	}
	n := k.aead.NonceSize()
	pt, err := k.aead.Open(nil, ct[:n], ct[n:], []byte(node))
	if err != nil {
		return "", fmt.Errorf("bootctl: node %s: stored BMC password does not decrypt with key %s (damaged, or copied from another node)", node, k.id)
	}
	return string(pt), nil
}

// unseal fills n.BMC.Password from what is stored, when it can: a legacy
// plain password as is, a sealed one with key (nil: left empty, and power
// actions then fail with ErrNoBMCKey). A key that does not open it is
// recorded in the BMC, so that the error shows where the password is
// needed and nowhere else (iPXE and listings work without it).
func unseal(n *Node, key *Key) {
	b := &n.BMC
	b.Password, b.keyErr = "", nil
	switch {
	case b.Plain != "":
		b.Password = b.Plain
	case b.Sealed != "" && key != nil:
		b.Password, b.keyErr = key.open(n.Name, b.Sealed)
	}
}

// ready says whether the BMC's password is usable: not stored encrypted
// without a key to open it.
func (b BMC) ready() error {
	switch {
	case b.keyErr != nil:
		return b.keyErr
	case b.Password == "" && b.Sealed != "":
		return ErrNoBMCKey
	}
	return nil
}
