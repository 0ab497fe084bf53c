package bootctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/strata-hpc/strata/internal/audit"
)

// ServerConfig configures the boot-configuration HTTP server.
type ServerConfig struct {
	// Meta is what nodes get as strata.meta: the service IP (and port).
	Meta string
	// URL is this server's address as nodes reach it, given to them as
	// strata.bootctl for check-ins (e.g. http://10.0.0.5:7480).
	URL string
	// Kernel and Initrd are the default URLs of the boot files.
	Kernel, Initrd string
	Logger         *slog.Logger
	// TLS says the server is behind HTTPS with optional client
	// certificates (pki.Identity.ServerTLSOptional): every path but the
	// iPXE script then needs a certificate (tlsauth.go). Audit receives
	// the refusals.
	TLS   bool
	Audit *audit.Log
}

// Server answers iPXE boot requests by MAC and records check-ins. Every
// answer comes from the inventory in the metadata service, so any number
// of controllers (the leader and its standbys) serve the same answers.
type Server struct {
	store *Store
	cfg   ServerConfig
	log   *slog.Logger
	mux   *http.ServeMux
	// Status, when set, is served on /status (the daemon's own view).
	Status func(ctx context.Context) any
}

// NewServer returns a server over store.
func NewServer(store *Store, cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Kernel == "" {
		cfg.Kernel = "http://boot.invalid/strata/vmlinuz"
	}
	if cfg.Initrd == "" {
		cfg.Initrd = "http://boot.invalid/strata/initrd.img"
	}
	s := &Server{store: store, cfg: cfg, log: cfg.Logger.With("component", "bootctl-http"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /boot/ipxe", s.handleIPXE)
	s.mux.HandleFunc("POST /boot/checkin", s.handleCheckIn)
	s.mux.HandleFunc("GET /boot/unknown", s.handleUnknown)
	s.mux.HandleFunc("GET /status", s.handleStatus)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.authorize(w, r) {
		s.mux.ServeHTTP(w, r)
	}
}

// Script returns the iPXE script for mac, or an error that says why there
// is none (ErrBadMAC for a malformed MAC; ErrNotFound for an unknown one,
// in which case the script is the "not registered" one).
func (s *Server) Script(ctx context.Context, rawMAC string) (string, error) {
	mac, err := NormalizeMAC(rawMAC)
	if err != nil {
		return "", err
	}
	n, err := s.store.NodeByMAC(ctx, mac)
	if errors.Is(err, ErrNotFound) {
		return notRegisteredScript(mac), err
	}
	if err != nil {
		return "", err
	}
	if n.Group == "" {
		return noGroupScript(n, "is in no group"), nil
	}
	g, err := s.store.GetGroup(ctx, n.Group)
	if errors.Is(err, ErrNotFound) {
		return noGroupScript(n, "names group "+n.Group+", which does not exist"), nil
	}
	if err != nil {
		return "", err
	}
	return ipxeScript(n, g, s.params(n, g), firstNonEmpty(g.Config.Kernel, s.cfg.Kernel), firstNonEmpty(g.Config.Initrd, s.cfg.Initrd)), nil
}

func (s *Server) params(n Node, g Group) BootParams {
	return BootParams{Meta: s.cfg.Meta, Image: g.Config.Image, Overlay: g.OverlayFor(n.Name), Node: n.Name,
		Group: g.Name, Generation: g.Config.Generation, Bootctl: s.cfg.URL}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) handleIPXE(w http.ResponseWriter, r *http.Request) {
	macs := r.URL.Query()["mac"]
	switch {
	case len(macs) == 0:
		http.Error(w, "missing mac parameter: GET /boot/ipxe?mac=aa:bb:cc:dd:ee:ff", http.StatusBadRequest)
		return
	case len(macs) > 1:
		http.Error(w, fmt.Sprintf("%d mac parameters given; ask for one MAC per request", len(macs)), http.StatusBadRequest)
		return
	}
	script, err := s.Script(r.Context(), macs[0])
	switch {
	case errors.Is(err, ErrBadMAC):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case errors.Is(err, ErrNotFound):
		mac, _ := NormalizeMAC(macs[0])
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if nerr := s.store.NoteUnknownMAC(r.Context(), mac, host); nerr != nil {
			s.log.Warn("could not record unknown MAC", "mac", mac, "err", nerr)
		}
		s.log.Info("boot request from an unregistered MAC", "mac", mac, "remote", host)
	case err != nil:
		s.log.Error("boot script", "mac", macs[0], "err", err)
		http.Error(w, "boot controller: inventory unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, script)
}

func (s *Server) handleCheckIn(w http.ResponseWriter, r *http.Request) {
	var ci CheckIn
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ci); err != nil {
		http.Error(w, "bad check-in: "+err.Error(), http.StatusBadRequest)
		return
	}
	n, err := s.store.GetNode(r.Context(), ci.Node)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "name") {
			code = http.StatusNotFound
		}
		http.Error(w, "check-in: "+err.Error(), code)
		return
	}
	if ci.MAC != "" {
		mac, err := NormalizeMAC(ci.MAC)
		if err != nil || !containsStr(n.MACs, mac) {
			http.Error(w, fmt.Sprintf("check-in: MAC %q is not one of node %s's", ci.MAC, n.Name), http.StatusBadRequest)
			return
		}
		ci.MAC = mac
	}
	ci.At = time.Now().UTC()
	if err := s.store.RecordCheckIn(r.Context(), ci); err != nil {
		http.Error(w, "check-in: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.log.Info("check-in", "node", ci.Node, "image", ci.Image, "overlay", ci.Overlay, "generation", ci.Generation, "error", ci.Error)
	w.WriteHeader(http.StatusNoContent)
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) handleUnknown(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.ListUnknownMACs(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, list)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if s.Status == nil {
		writeJSON(w, map[string]string{"state": "serving"})
		return
	}
	writeJSON(w, s.Status(r.Context()))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
