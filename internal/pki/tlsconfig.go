package pki

import (
	"crypto/tls"
	"crypto/x509"
)

// ServerTLS is the configuration of a server that requires a client
// certificate from the cluster CA, with one of the allowed roles (none:
// any role). Certificate and CA bundle are read per handshake from the
// reloading Identity.
func (id *Identity) ServerTLS(allowed ...Role) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: id.getCertificate,
		// The chain is verified here rather than by crypto/tls so that
		// the CA bundle can change while the server runs; VerifyConnection
		// also runs on resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := id.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, allowed)
			return err
		},
	}
}

// ServerTLSOptional is ServerTLS for a server where some requests need
// no client certificate (the boot controller's iPXE script, fetched by
// firmware that has none): a certificate, when sent, must still verify;
// handlers check the role with PeerOfState.
func (id *Identity) ServerTLSOptional(allowed ...Role) *tls.Config {
	c := id.ServerTLS(allowed...)
	c.ClientAuth = tls.RequestClientCert
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := id.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, allowed)
		return err
	}
	return c
}

// ClientTLS is the configuration of a client that presents its
// certificate and accepts a server only with a certificate from the
// cluster CA carrying one of the server roles given (none: any role).
//
// Host names are not checked: the cluster CA is private and signs only
// cluster members, and the role is the identity that matters (a client
// certificate must not pass for a server). Servers are reached by IP,
// service IP and names that change as voters are replaced; tying
// certificates to them would make every replacement a re-issue. Nomad
// makes the same choice with its "server.region.nomad" names.
func (id *Identity) ClientTLS(serverRoles ...Role) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification happens in VerifyConnection, against the current
		// CA bundle and the expected role; see above for why not the
		// host name.
		InsecureSkipVerify:   true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { c, _ := id.current(); return c, nil },
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := id.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, serverRoles)
			return err
		},
	}
}

func (id *Identity) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _ := id.current()
	return c, nil
}

// PeerOfState returns the verified peer of a TLS connection (an HTTP
// request's r.TLS), or false when it sent no certificate.
func PeerOfState(cs *tls.ConnectionState) (Peer, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Peer{}, false
	}
	leaf := cs.PeerCertificates[0]
	return Peer{Role: RoleOf(leaf), Name: leaf.Subject.CommonName, Tenant: TenantOf(leaf)}, true
}
