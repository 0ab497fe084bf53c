package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/strata-hpc/strata/bootctl"
)

// The key of the BMC passwords (bootctl/secret.go): a file given with
// --bmc-key-file or STRATA_BMC_KEY_FILE; without either, the dev cluster's
// key (strata dev writes DIR/bmc.key) when it exists, so that commands
// against `strata dev` need no flag.

func addKeyFlag(fs *flag.FlagSet) *string {
	return fs.String("bmc-key-file", envDefault("bmc-key-file", ""), "file with the key of the stored BMC passwords (strata bootctl keygen; default: the dev cluster's)")
}

// devKeyFile is where `strata dev` keeps the key of its inventory.
func devKeyFile(dir string) string { return filepath.Join(dir, "bmc.key") }

// loadBMCKey loads the key named by path, or the dev cluster's when path
// is empty and it exists; nil (no key) otherwise.
func loadBMCKey(path string) (*bootctl.Key, error) {
	if path == "" {
		path = devKeyFile(envDefault("dev-dir", defaultDevDir()))
		if !fileExists(path) {
			return nil, nil
		}
	}
	return bootctl.LoadKeyFile(path)
}

// withKey loads the key named by path into st.
func withKey(st *bootctl.Store, path string) error {
	k, err := loadBMCKey(path)
	if err != nil {
		return err
	}
	if k != nil {
		st.SetKey(k)
	}
	return nil
}

// ensureDevKey creates the dev cluster's BMC key on its first start and
// keeps it afterwards (the inventory's passwords need the same key).
func ensureDevKey(dir string) (string, error) {
	p := devKeyFile(dir)
	if fileExists(p) {
		k, err := bootctl.LoadKeyFile(p)
		if err != nil {
			return "", err
		}
		return k.ID(), nil
	}
	k, err := bootctl.WriteKeyFile(p, false)
	if err != nil {
		return "", err
	}
	return k.ID(), nil
}

// runBootctlKeygen: strata bootctl keygen --out FILE [--force].
func runBootctlKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bootctl keygen", stderr)
	out := fs.String("out", "", "file to write the new key to (mode 0600)")
	force := fs.Bool("force", false, "replace an existing file (every password sealed with the old key is then unreadable: rekey first)")
	if _, err := parseBoot(fs, args, 0, 0, "bootctl keygen --out FILE [--force]"); err != nil {
		return err
	}
	if *out == "" {
		return usageErr("--out FILE is required")
	}
	k, err := bootctl.WriteKeyFile(*out, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "BMC key %s written to %s; give it to the boot controller and the node commands with --bmc-key-file or STRATA_BMC_KEY_FILE\n", k.ID(), *out)
	return nil
}

// runBootctlRekey: strata bootctl rekey --old-key-file OLD --bmc-key-file NEW
// re-encrypts every stored BMC password with NEW (also seals passwords
// stored unencrypted by an older version).
func runBootctlRekey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bootctl rekey", stderr)
	cf := addClientFlags(fs)
	oldFile := fs.String("old-key-file", "", "the key the passwords are encrypted with now (none: only unencrypted passwords are sealed)")
	newFile := addKeyFlag(fs)
	if _, err := parseBoot(fs, args, 0, 0, "bootctl rekey --old-key-file OLD --bmc-key-file NEW"); err != nil {
		return err
	}
	if *newFile == "" {
		return usageErr("--bmc-key-file NEW is required (strata bootctl keygen --out NEW)")
	}
	next, err := bootctl.LoadKeyFile(*newFile)
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if *oldFile != "" {
		old, err := bootctl.LoadKeyFile(*oldFile)
		if err != nil {
			return err
		}
		st.SetKey(old)
	}
	n, err := st.Rekey(ctx, next)
	fmt.Fprintf(stdout, "%d BMC passwords re-encrypted with key %s\n", n, next.ID())
	return err
}
