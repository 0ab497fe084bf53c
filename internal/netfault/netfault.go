// Package netfault cuts a server off the network for tests, with real
// sockets: a Switch wraps a server's listeners and outbound dialer; Cut
// closes every connection through them and refuses new ones until Heal.
// It stands in for a network partition inside one process (the in-process
// harness); the multi-host harness cuts real links in network namespaces.
package netfault

import (
	"context"
	"errors"
	"net"
	"sync"
)

// ErrCut is returned by dials through a cut switch.
var ErrCut = errors.New("netfault: partitioned")

// Switch is one server's connection to the network. The zero value is not
// usable; a nil *Switch is a switch that is never cut.
type Switch struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// New returns a closed (connected) switch.
func New() *Switch { return &Switch{conns: make(map[net.Conn]struct{})} }

// Cut partitions the server: all its connections close and new ones fail.
func (s *Switch) Cut() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.cut = true
	conns := s.conns
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Heal reconnects the server.
func (s *Switch) Heal() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.cut = false
	s.mu.Unlock()
}

// IsCut reports whether the switch is cut.
func (s *Switch) IsCut() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

// track registers c, or closes it at once when the switch is cut.
func (s *Switch) track(c net.Conn) (net.Conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		c.Close()
		return nil, false
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, true
}

type trackedConn struct {
	net.Conn
	s    *Switch
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// Listener wraps l so that accepted connections obey the switch.
func (s *Switch) Listener(l net.Listener) net.Listener {
	if s == nil {
		return l
	}
	return &listener{Listener: l, s: s}
}

type listener struct {
	net.Listener
	s *Switch
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := l.s.track(c); ok {
			return tc, nil
		}
	}
}

// Dial dials through the switch.
func (s *Switch) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.IsCut() {
		return nil, ErrCut
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil || s == nil {
		return c, err
	}
	tc, ok := s.track(c)
	if !ok {
		return nil, ErrCut
	}
	return tc, nil
}
