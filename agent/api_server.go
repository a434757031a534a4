package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// What a request without credentials gets: a browser asks for the login (any
// user name, the token as password), a program reads why.
const (
	apiChallenge    = `Basic realm="Dkron", charset="UTF-8"`
	apiUnauthorized = `{"error":"the stack's API token or a client certificate of its CA is required"}`
	apiCrossSite    = `{"error":"a request from another site's page may not change anything"}`
)

// apiConfig serves the API on the network: the node's certificate to browsers
// and curl (TLS 1.2 and later), and a client's certificate, when one is shown,
// checked against the stack's CA in the handshake (another CA's is refused
// there). A client without one is asked for the token, request by request.
func (s *security) apiConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.certificate},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.authority,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// requireCredentials lets a request through with a client certificate the
// handshake verified against the stack's CA, or with the token as a bearer
// token or as the Basic password; everything else, /health and the UI
// included, gets 401.
func requireCredentials(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSiteChange(r) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, apiCrossSite)
			return
		}
		if hasVerifiedCertificate(r) || tokenMatches(r, want) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", apiChallenge)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, apiUnauthorized)
	})
}

// crossSiteChange is a request that would change something, sent by a browser
// for a page of another site (a form posting here, say). A browser that logged
// in to the UI sends its Basic login with such a request on its own, so it is
// refused whatever it carries. Programs send neither header; the UI's own
// requests come from its origin.
func crossSiteChange(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	parsed, err := url.Parse(origin)
	return err != nil || parsed.Host != r.Host
}

func hasVerifiedCertificate(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// tokenMatches compares digests, in constant time: neither the token's bytes
// nor its length show in the time a wrong guess takes.
func tokenMatches(r *http.Request, want [sha256.Size]byte) bool {
	presented, ok := presentedToken(r)
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func presentedToken(r *http.Request) (string, bool) {
	if _, password, ok := r.BasicAuth(); ok {
		return password, true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token), true
	}
	return "", false
}

// apiServer is one running end of the API.
type apiServer struct {
	*http.Server
	addr net.Addr
}

// startHTTPS listens on addr at once (a port in use is the caller's error to
// log) and serves HTTPS with credentials in the background. A request in
// clear gets Go's 400 and nothing else.
func startHTTPS(addr string, conf *tls.Config, token string, handler http.Handler, logger *logrus.Entry) (*apiServer, error) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	server := newServer(requireCredentials(token, handler), logger)
	server.TLSConfig = conf
	go serve(logger, func() error { return server.ServeTLS(listener, "", "") })
	return &apiServer{Server: server, addr: listener.Addr()}, nil
}

// startSocket serves the API in clear, without credentials, on a Unix socket
// only the agent's user can open (the container's own processes).
func startSocket(path string, handler http.Handler, logger *logrus.Entry) (*apiServer, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	listener, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = listener.Close()
		return nil, err
	}
	server := newServer(handler, logger)
	go serve(logger, func() error { return server.Serve(listener) })
	return &apiServer{Server: server, addr: listener.Addr()}, nil
}

// removeStale removes what a previous run left at the socket's path (a
// socket is not removed when the agent is killed).
func removeStale(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("api: the socket's path %s is a directory", path)
	}
	return os.Remove(path)
}

// newServer bounds how long a client may take to send its headers (the port
// may be published). The server's own complaints (mostly failed handshakes:
// the client is told) are debug lines.
func newServer(handler http.Handler, logger *logrus.Entry) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(logger.WriterLevel(logrus.DebugLevel), "api: ", 0),
	}
}

func serve(logger *logrus.Entry, run func() error) {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.WithError(err).Error("api: HTTP server stopped")
	}
}
