package fuse

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Point  string // mount point, unescaped
	FSType string // e.g. "fuse.strata"
	Source string // e.g. "strata"
}

// mounts lists the mounts of this process's mount namespace.
func mounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("fuse: list mounts: %w", err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, ok := parseMountinfo(sc.Text()); ok {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fuse: list mounts: %w", err)
	}
	return out, nil
}

// parseMountinfo parses "id parent maj:min root point opts [tags] - type
// source superopts" (proc(5)).
func parseMountinfo(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	a, b := strings.Fields(pre), strings.Fields(post)
	if len(a) < 5 || len(b) < 2 {
		return mountEntry{}, false
	}
	return mountEntry{Point: unescapeOctal(a[4]), FSType: b[0], Source: unescapeOctal(b[1])}, true
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountpoint reports whether mp (absolute, clean) is a mount point.
func isMountpoint(mp string) (bool, error) {
	ms, err := mounts()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.Point == mp {
			return true, nil
		}
	}
	return false, nil
}
