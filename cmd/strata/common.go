package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Ports of the dev cluster; the CLI's default metadata addresses point at
// them, so `strata ls /` works against `make dev` with no flags.
const (
	devBasePort  = 7400
	devMetas     = 3
	devServiceIP = "127.0.0.100"
)

// defaultMetaAddrs: the dev cluster's service IP, then its servers.
func defaultMetaAddrs() string {
	a := []string{fmt.Sprintf("%s:%d", devServiceIP, devBasePort)}
	for i := 0; i < devMetas; i++ {
		a = append(a, fmt.Sprintf("127.0.0.1:%d", devBasePort+i))
	}
	return strings.Join(a, ",")
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newLogger builds the slog logger of a daemon.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// humanBytes prints a byte count with a binary unit.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanAge(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Millisecond).String() + " ago"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
