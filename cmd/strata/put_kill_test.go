package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestPutKilledLeavesNoPartialFile: a real `strata put` process killed
// with SIGKILL halfway through a file leaves the older file under the name
// whole (no prefix of the new one is ever visible there), and a retry
// succeeds. The killed put's hidden temporary file is all that remains.
func TestPutKilledLeavesNoPartialFile(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	old := randomBytes(300<<10, 7)
	putFile(t, c, "/f", old)
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })

	cmd := exec.Command(os.Args[0], "put", "--meta", strings.Join(c.MetaAddrs(), ","), "-", "/f")
	cmd.Env = append(os.Environ(), asStrata, "STRATA_TLS_DIR="+testTLSDir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Several whole chunks of the new content, with the stream left open:
	// the put is in the middle of the file.
	fed := make(chan error, 1)
	go func() {
		_, err := stdin.Write(randomBytes(24<<20, 8))
		fed <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmp := waitTempFile(ctx, t, cl)
	select {
	case err := <-fed:
		if err != nil {
			t.Fatalf("feeding the put: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the put did not take its input")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	checkFile(t, c, "/f", old)
	if _, err := cl.Stat(ctx, "/"+tmp); err != nil {
		t.Errorf("the killed put's temporary file %s: %v", tmp, err)
	}
	// A retry puts the whole new file; the leftover is removed by rm.
	fresh := randomBytes(9<<20, 9)
	putFile(t, c, "/f", fresh)
	checkFile(t, c, "/f", fresh)
	mustCLI(t, c, "rm", "/"+tmp)
}

// waitTempFile waits for a put's hidden temporary file in / and returns
// its name.
func waitTempFile(ctx context.Context, t *testing.T, cl *client.Client) string {
	t.Helper()
	for {
		ents, err := cl.ReadDir(ctx, "/")
		if err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.GetName(), ".strata-put-") {
					return e.GetName()
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no temporary file of the put appeared: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
