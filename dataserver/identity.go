package dataserver

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// identityFile holds the dataserver's UUID. The metadata service knows a
// dataserver by it, so it must survive restarts: it is written to every data
// dir, and any surviving dir brings it back after a disk is replaced.
const identityFile = "IDENTITY"

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dataserver: generate uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}

// loadIdentity returns the UUID recorded in the dirs, creating one on first
// start, and writes it to the dirs that lack it. Dirs that disagree belong
// to different dataservers: mixing them would merge two servers' shards
// under one identity, so that is refused.
func loadIdentity(dirs []string) (string, error) {
	id, from := "", ""
	var missing []string
	for _, d := range dirs {
		removeIdentityTemps(d)
		got, err := readIdentity(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, d)
		case err != nil:
			return "", err
		case id == "":
			id, from = got, d
		case got != id:
			return "", fmt.Errorf("dataserver: data dirs %s and %s belong to different dataservers (identity %s vs %s)", from, d, id, got)
		}
	}
	if id == "" {
		var err error
		if id, err = newUUID(); err != nil {
			return "", err
		}
	}
	for _, d := range missing {
		if err := writeIdentity(d, id); err != nil {
			return "", err
		}
	}
	return id, nil
}

// removeIdentityTemps removes what a crash in writeIdentity left behind.
func removeIdentityTemps(dir string) {
	temps, _ := filepath.Glob(filepath.Join(dir, identityFile+tempMarker+"*"))
	for _, p := range temps {
		os.Remove(p)
	}
}

func readIdentity(dir string) (string, error) {
	p := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("dataserver: read identity: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !validUUID(id) {
		return "", fmt.Errorf("dataserver: %s does not hold a valid identity (%q); restore it or remove it to start as a new dataserver", p, id)
	}
	return id, nil
}

// writeIdentity writes the file atomically and durably: a torn IDENTITY
// would make the server come back as a stranger.
func writeIdentity(dir, id string) (err error) {
	f, err := os.CreateTemp(dir, identityFile+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("dataserver: write identity in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
			err = fmt.Errorf("dataserver: write identity in %s: %w", dir, err)
		}
	}()
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, identityFile)); err != nil {
		return err
	}
	return syncDir(dir)
}
