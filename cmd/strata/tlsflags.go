package main

import (
	"flag"
	"log/slog"
	"path/filepath"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
)

// tlsFlags are the flags of every command that connects or serves:
// --tls-dir DIR (ca.crt and ROLE.crt/ROLE.key; STRATA_TLS_DIR) or
// --insecure (plain text, with a warning). Neither is an error that names
// both, so a cluster never falls back to plain text by accident.
type tlsFlags struct {
	dir      *string
	insecure *bool
}

// addTLSFlags adds the flags. Client commands (client true) default to
// the dev cluster's certificates when they exist, so that `make dev`
// followed by `strata ls /` needs no flags.
func addTLSFlags(fs *flag.FlagSet, client bool) *tlsFlags {
	def := envDefault("tls-dir", "")
	if def == "" && client {
		if d := devTLSDir(defaultDevDir()); fileExists(filepath.Join(d, pki.CertFile(pki.RoleClient))) {
			def = d
		}
	}
	return &tlsFlags{
		dir:      fs.String("tls-dir", def, "directory with ca.crt and this role's certificate and key (ROLE.crt, ROLE.key); env STRATA_TLS_DIR"),
		insecure: fs.Bool("insecure", envDefault("insecure", "") == "1", "plain text: no TLS, no authentication (env STRATA_INSECURE=1)"),
	}
}

// identity loads the certificate of role, or returns nil (plain text)
// with a warning when --insecure is given.
func (f *tlsFlags) identity(role pki.Role, log *slog.Logger) (*pki.Identity, error) {
	if *f.insecure {
		if log != nil {
			log.Warn("running WITHOUT TLS (--insecure): connections are neither encrypted nor authenticated")
		}
		return nil, nil
	}
	if *f.dir == "" {
		return nil, usageErr("no TLS certificates: give --tls-dir DIR (or set STRATA_TLS_DIR) holding ca.crt, %s and %s, or --insecure for plain text",
			pki.CertFile(role), pki.KeyFile(role))
	}
	id, err := pki.Load(*f.dir, role, log)
	if err != nil {
		return nil, usageErr("--tls-dir %s: %v", *f.dir, err)
	}
	return id, nil
}

// env passes the TLS choice on to a child strata process.
func (f *tlsFlags) env() []string {
	if *f.insecure {
		return []string{"STRATA_INSECURE=1"}
	}
	if *f.dir != "" {
		return []string{"STRATA_TLS_DIR=" + *f.dir}
	}
	return nil
}

// devTLSDir is where `strata dev` keeps its certificates (its CA in
// devCADir, never handed to clients).
func devTLSDir(devDir string) string { return filepath.Join(devDir, "tls") }

func devCADir(devDir string) string { return filepath.Join(devDir, "ca") }

// openDaemonAudit opens a daemon's audit log (records of refused handshakes and
// calls, certificate issue): the file given, or none when path is "".
func openDaemonAudit(path string, log *slog.Logger) (*audit.Log, error) {
	if path == "" {
		return nil, nil
	}
	a, err := audit.Open(path, log)
	if err != nil {
		return nil, err
	}
	return a, nil
}
