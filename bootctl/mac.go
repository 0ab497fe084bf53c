package bootctl

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrBadMAC is the error of a MAC address that cannot be parsed.
var ErrBadMAC = errors.New("bootctl: malformed MAC address")

// NormalizeMAC accepts a 48-bit MAC in any common notation
// (aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff, aabbccddeeff) and
// returns it as lower-case colon-separated hex, the form iPXE's ${mac}
// sends and the form stored in the inventory.
func NormalizeMAC(s string) (string, error) {
	in := strings.TrimSpace(s)
	if len(in) == 12 && isHex(in) {
		in = strings.Join([]string{in[0:2], in[2:4], in[4:6], in[6:8], in[8:10], in[10:12]}, ":")
	}
	hw, err := net.ParseMAC(in)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%w: %q (want six hex bytes, e.g. 52:54:00:12:34:56)", ErrBadMAC, s)
	}
	return hw.String(), nil
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// macEntryName is the MAC as a file name in the index (no colons, so that
// it reads the same in every tool).
func macEntryName(mac string) string { return strings.ReplaceAll(mac, ":", "-") }
