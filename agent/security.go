package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/viper"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// security is what a node proves and trusts: its certificate and key, issued
// by the stack's CA, and that CA alone.
type security struct {
	certificate tls.Certificate
	authority   *x509.CertPool
}

// The `tls:` section of dkron.yml (components/node_config.py writes it).
// The node's key is in a file (key-file) or in the environment variable
// key-env names (how this project's nodes get it: the container's secret
// environment, like the gossip key).
const (
	caFileKey   = "tls.ca-file"
	certFileKey = "tls.cert-file"
	keyFileKey  = "tls.key-file"
	keyEnvKey   = "tls.key-env"
)

// loadSecurity reads what the `tls:` section names; nil when there is no such
// section (a node of a stack made before TLS).
func loadSecurity(v *viper.Viper) (*security, error) {
	ca, cert := v.GetString(caFileKey), v.GetString(certFileKey)
	keyFile, keyEnv := v.GetString(keyFileKey), v.GetString(keyEnvKey)
	if ca == "" && cert == "" && keyFile == "" && keyEnv == "" {
		return nil, nil
	}
	if ca == "" || cert == "" || (keyFile == "") == (keyEnv == "") {
		return nil, errors.New("config: tls needs ca-file, cert-file and one of key-file or key-env")
	}
	var key []byte
	if keyEnv != "" {
		key = []byte(os.Getenv(keyEnv))
		if len(key) == 0 {
			return nil, fmt.Errorf("tls: the node's key: %s is not set", keyEnv)
		}
	} else {
		read, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: the node's key: %w", err)
		}
		key = read
	}
	return readSecurity(ca, cert, key)
}

func readSecurity(caFile, certFile string, key []byte) (*security, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: the node's certificate: %w", err)
	}
	certificate, err := tls.X509KeyPair(certPEM, key)
	if err != nil {
		return nil, fmt.Errorf("tls: the node's certificate and key: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: the stack's CA: %w", err)
	}
	authority := x509.NewCertPool()
	if !authority.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: no certificate in %s", caFile)
	}
	return &security{certificate: certificate, authority: authority}, nil
}

// peerConfig serves the RPC port (gRPC and Raft inside one TLS listener) and
// dials Raft peers: both ends show a certificate of the stack's CA, and a
// connection without one is closed in the handshake.
//
// Peers are checked against the CA, not against the name or address dialled:
// on one engine a node's address is Docker's to choose after its certificate
// is made. Every certificate the CA issues is a node of this stack (the CA's
// key never leaves the Pulumi state), so the CA is the trust boundary.
func (s *security) peerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    s.authority,
		// gRPC clients insist on HTTP/2 being agreed in the handshake; Raft
		// shares the listener and ignores it.
		NextProtos: []string{"h2"},
		// Whichever side dials, the other is checked below against the CA alone.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection checks the chain
		VerifyConnection:   s.verifyPeer,
		// Dkron's gRPC client dials a new connection for every call (a job
		// written through a follower is one); resuming a session the node
		// verified before spares each of them the certificate exchange.
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
}

func (s *security) verifyPeer(state tls.ConnectionState) error {
	if len(state.PeerCertificates) == 0 {
		return errors.New("tls: the peer showed no certificate")
	}
	if state.DidResume {
		return nil
	}
	intermediates := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         s.authority,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("tls: the peer's certificate is not of this stack's CA: %w", err)
	}
	return nil
}

// dialOption is the gRPC client's: the node's certificate shown, the server's
// checked against the stack's CA.
func (s *security) dialOption() grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(s.peerConfig()))
}
