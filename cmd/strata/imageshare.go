package main

import (
	"context"
	"fmt"
	"io"
)

// runImageShare gives a tenant a read-only copy of an image.
func runImageShare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image share", stderr)
	cf := addClientFlags(fs)
	tenant := fs.String("to", "", "the tenant to share the image with")
	if err := parse(fs, args, 1, 1, "image share [flags] --to TENANT NAME:TAG"); err != nil {
		return err
	}
	if *tenant == "" && fs.NArg() == 1 {
		return usageErr("image share: --to TENANT is required")
	}
	refs, err := parseRefs(fs.Arg(0))
	if err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := s.Share(ctx, refs[0], *tenant); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image %s shared read-only with tenant %s\n", refs[0], *tenant)
	return nil
}
