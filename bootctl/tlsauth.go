package bootctl

import (
	"net/http"
	"slices"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
)

// HTTPS policy of the boot controller (NOTES.md, "Security: mTLS").
//
// iPXE firmware usually has no client certificate, so GET /boot/ipxe is
// served over HTTPS to anyone: a boot script holds no secret (image and
// overlay names, the metadata address), and a node still needs its own
// certificate to reach the metadata service. Everything else needs a
// certificate of the cluster: check-ins come from boot agents (role
// client), and the unknown-MAC list and /status are for operators and
// other controllers (client or bootctl).
var httpRoles = map[string][]pki.Role{
	"/boot/checkin": {pki.RoleClient, pki.RoleBootctl},
	"/boot/unknown": {pki.RoleClient, pki.RoleBootctl},
	"/status":       {pki.RoleClient, pki.RoleBootctl, pki.RoleMeta},
}

// noCertPaths are served without a client certificate.
var noCertPaths = []string{"/boot/ipxe"}

// authorize applies the policy above when the server runs behind TLS
// (ServerConfig.TLS); it answers 403 itself and reports false on refusal.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if !s.cfg.TLS || slices.Contains(noCertPaths, r.URL.Path) {
		return true
	}
	p, ok := pki.PeerOfState(r.TLS)
	roles, known := httpRoles[r.URL.Path]
	if ok && (!known || slices.Contains(roles, p.Role)) {
		// Unknown paths fall through to the mux's 404, for holders of a
		// cluster certificate only.
		return true
	}
	actor := "unauthenticated " + r.RemoteAddr
	if ok {
		actor = string(p.Role) + ":" + p.Name
	}
	s.cfg.Audit.Record(r.Context(), "http.authorize", actor, r.Method+" "+r.URL.Path, audit.Denied)
	http.Error(w, "boot controller: a client certificate of this cluster with another role is required for "+r.URL.Path, http.StatusForbidden)
	return false
}
