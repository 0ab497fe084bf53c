package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/internal/audit"
)

// defaultAuditLog is where the CLI's boot controller actions (power, group
// switch, node add/rm/set) are recorded: STRATA_AUDIT_LOG, else beside the
// dev cluster's state (~/.local/share/strata/audit.log), mode 0600.
func defaultAuditLog() string {
	if p := os.Getenv("STRATA_AUDIT_LOG"); p != "" {
		return p
	}
	return filepath.Join(filepath.Dir(defaultDevDir()), "audit.log")
}

// openAudit opens the audit log at path for actor. A log that cannot be
// opened is a warning, not a failure: refusing to power a node because the
// audit file is unwritable would be worse than a missing record.
func openAudit(path, actor string) bootctl.Audit {
	l, err := audit.Open(path, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata: warning: audit log: %v\n", err)
		return bootctl.Audit{}
	}
	return bootctl.Audit{Log: l, Actor: actor}
}
