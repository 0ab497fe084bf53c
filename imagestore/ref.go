package imagestore

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadName marks an image or overlay name that the store refuses.
var ErrBadName = errors.New("imagestore: bad name")

// maxNameLen bounds each part of a name: it becomes a directory name in
// Strata (255 bytes at most) and appears in kernel command lines.
const maxNameLen = 128

// Ref names one image: NAME:TAG, as in `strata image import debian:12`.
type Ref struct {
	Name, Tag string
}

func (r Ref) String() string { return r.Name + ":" + r.Tag }

// ParseRef parses and checks "NAME:TAG". It is the one place that says what
// an image name may be; the CLI, the FUSE image mount and the boot
// controller all go through it.
func ParseRef(s string) (Ref, error) {
	name, tag, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, fmt.Errorf("%w: image %q: want NAME:TAG (e.g. debian:12)", ErrBadName, s)
	}
	if err := checkPart("image name", s, name); err != nil {
		return Ref{}, err
	}
	if err := checkPart("image tag", s, tag); err != nil {
		return Ref{}, err
	}
	return Ref{Name: name, Tag: tag}, nil
}

// CheckOverlayName checks the name of an overlay or of a node's
// sub-overlay, with the same rule as an image name's parts.
func CheckOverlayName(s string) error { return checkPart("overlay name", s, s) }

// checkPart checks one part of a name: 1-128 characters from
// [A-Za-z0-9._-], not starting with '.' or '-' (hidden entries and flags),
// so that it is safe as a directory name, on a command line and in a URL.
func checkPart(what, whole, part string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s %q in %q %s", ErrBadName, what, part, whole, why)
	}
	switch {
	case part == "":
		return bad("is empty")
	case len(part) > maxNameLen:
		return bad(fmt.Sprintf("is longer than %d characters", maxNameLen))
	case part[0] == '.' || part[0] == '-':
		return bad("must not start with '.' or '-'")
	}
	for _, r := range part {
		switch {
		case r == '/':
			return bad("contains '/'")
		case r == ' ' || r == '\t' || r == '\n':
			return bad("contains white space")
		case r == ':':
			return bad("contains a second ':'")
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return bad(fmt.Sprintf("contains %q (allowed: letters, digits, '.', '_', '-')", r))
		}
	}
	return nil
}
