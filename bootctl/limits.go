package bootctl

import (
	"net/http"

	"github.com/strata-hpc/strata/internal/ratelimit"
)

// HTTPLimits bounds what one client may send to the boot controller.
type HTTPLimits struct {
	// MaxBody is the largest request body read (a check-in is a few
	// hundred bytes of JSON); a larger one gets 413.
	MaxBody int64
	// Rate is the per-client request rate (per IP, or per certificate
	// subject once TLS is on). A whole rack booting at once sends one
	// script request and one check-in per node from distinct addresses,
	// so a per-address limit never slows a mass boot.
	Rate ratelimit.Config
}

// DefaultHTTPLimits: 64 KiB bodies; 100 requests/s per client, bursts of
// 200 (a node asks for its script once per boot and checks in once).
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{MaxBody: 64 << 10, Rate: ratelimit.Config{Rate: 100, Burst: 200}}
}

// Limit wraps h with the body cap and the per-client rate limit. A nil
// limiter (lim) makes one from l.Rate; pass one to share it.
func Limit(h http.Handler, l HTTPLimits, lim *ratelimit.Limiter) http.Handler {
	if lim == nil {
		lim = ratelimit.New(l.Rate)
	}
	capped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > l.MaxBody {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, l.MaxBody)
		h.ServeHTTP(w, r)
	})
	return ratelimit.Middleware(lim, capped)
}
