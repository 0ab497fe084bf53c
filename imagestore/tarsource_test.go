package imagestore

import (
	"archive/tar"
	"encoding/base64"
	"testing"
)

// TestPaxXattrs: xattrs as GNU tar and Go's archive/tar (docker export)
// write them (SCHILY.xattr, raw) and as bsdtar does (LIBARCHIVE.xattr,
// URL-encoded name, base64 value); a bad base64 value is an error.
func TestPaxXattrs(t *testing.T) {
	h := &tar.Header{Name: "f", PAXRecords: map[string]string{
		"SCHILY.xattr.security.capability": string(capV2),
		"LIBARCHIVE.xattr.user.a%20b":      base64.StdEncoding.EncodeToString([]byte("v\x00w")),
		"SCHILY.acl.access":                "user::rw-",
		"mtime":                            "1.5",
	}}
	x, err := paxXattrs(h)
	must(t, err)
	if len(x) != 2 || string(x["security.capability"]) != string(capV2) || string(x["user.a b"]) != "v\x00w" {
		t.Errorf("xattrs: %q", x)
	}
	h.PAXRecords = map[string]string{"LIBARCHIVE.xattr.user.x": "!!not base64!!"}
	if _, err := paxXattrs(h); err == nil {
		t.Error("bad base64 accepted")
	}
}

// TestCheckSymlink: relative targets that climb above the root from where
// the link sits are refused; absolute ones and ones that stay inside pass.
func TestCheckSymlink(t *testing.T) {
	ok := map[string]string{
		"etc/localtime":  "/usr/share/zoneinfo/UTC",
		"usr/os-release": "../etc/os-release",
		"a/b/c":          "../../x",
		"lib64/ld.so":    "../lib/x86_64-linux-gnu/ld.so",
		"a/b":            "./c/../d",
	}
	for p, target := range ok {
		if err := checkSymlink(p, target); err != nil {
			t.Errorf("%s -> %s: %v", p, target, err)
		}
	}
	bad := map[string]string{
		"l":     "../x",
		"a/l":   "../../etc/shadow",
		"a/b/c": "x/../../../../y",
		"e":     "",
	}
	for p, target := range bad {
		if err := checkSymlink(p, target); err == nil {
			t.Errorf("%s -> %q accepted", p, target)
		}
	}
}
