package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/sirupsen/logrus"
	"github.com/spf13/viper"
)

const testToken = "s3cret-url-safe_token"

// authority is a throwaway CA of the tests.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a certificate as components/pki.py does for a node: server and
// client use, the loopback named.
func (a *authority) issue(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost", name},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func (a *authority) clientCertificate(t *testing.T, name string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := a.issue(t, name)
	certificate, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certificate
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// nodeSecurity is a node's security as loadSecurity reads it from files.
func nodeSecurity(t *testing.T, ca *authority) *security {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem")
	certPEM, keyPEM := ca.issue(t, "node-1")
	writeFile(t, caFile, ca.pem)
	writeFile(t, certFile, certPEM)
	s, err := readSecurity(caFile, certFile, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testLogger() *logrus.Entry {
	logger := logrus.New()
	logger.Out = io.Discard
	return logrus.NewEntry(logger)
}

// okHandler stands for Dkron's routes where the test is about the door only.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "ok")
})

// startTestHTTPS serves handler as the agent does on http-addr, on a free port.
func startTestHTTPS(t *testing.T, s *security, handler http.Handler) string {
	t.Helper()
	server, err := startHTTPS("127.0.0.1:0", s.apiConfig(), testToken, handler, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return "https://" + server.addr.String()
}

// client trusts the CA; certificates, when given, are shown to the server.
func client(ca *authority, certificates ...tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: certificates, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
	}
}

func get(t *testing.T, c *http.Client, url string, prepare func(*http.Request)) (*http.Response, string) {
	t.Helper()
	request, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(request)
	}
	response, err := c.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response, string(body)
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

func TestHTTPSCredentials(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	cases := []struct {
		name    string
		prepare func(*http.Request)
		status  int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"wrong bearer", bearer("not-the-token"), http.StatusUnauthorized},
		{"empty bearer", bearer(""), http.StatusUnauthorized},
		{"right bearer", bearer(testToken), http.StatusOK},
		{"bearer, lower case scheme", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+testToken) }, http.StatusOK},
		{"basic, right password", basic("anyone", testToken), http.StatusOK},
		{"basic, no user name", basic("", testToken), http.StatusOK},
		{"basic, wrong password", basic("anyone", "guess"), http.StatusUnauthorized},
		{"basic, token as user name", basic(testToken, ""), http.StatusUnauthorized},
		{"token in another scheme", func(r *http.Request) { r.Header.Set("Authorization", "Token "+testToken) }, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			response, body := get(t, client(ca), base+"/v1/jobs", c.prepare)
			if response.StatusCode != c.status {
				t.Fatalf("status %d, want %d", response.StatusCode, c.status)
			}
			if response.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", response.Proto)
			}
			if c.status == http.StatusOK {
				return
			}
			if got := response.Header.Get("WWW-Authenticate"); got != `Basic realm="Dkron", charset="UTF-8"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if body != `{"error":"the stack's API token or a client certificate of its CA is required"}` {
				t.Errorf("body %q", body)
			}
			if strings.Contains(body, testToken) {
				t.Error("the token is in the body")
			}
		})
	}
}

func TestHTTPSClientCertificateOfTheStack(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	response, _ := get(t, client(ca, ca.clientCertificate(t, "operator")), base+"/health", nil)
	if response.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 without the token", response.StatusCode)
	}
}

func TestHTTPSClientCertificateOfAnotherCA(t *testing.T) {
	ca, other := newAuthority(t, "stack CA"), newAuthority(t, "another CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	request, err := http.NewRequest(http.MethodGet, base+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Shown even though the server names the stack's CA as the one it accepts
	// (Go's client would otherwise keep it and send none).
	intruder := other.clientCertificate(t, "intruder")
	forced := client(ca)
	forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate =
		func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &intruder, nil }
	response, err := forced.Do(request)
	if err == nil {
		defer response.Body.Close()
		t.Fatalf("another CA's certificate: status %d, want a failed handshake", response.StatusCode)
	}
	// As Go's client shows it: no certificate, so the token is asked for.
	response, _ = get(t, client(ca, intruder), base+"/health", nil)
	if response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", response.StatusCode)
	}
}

// A node's own certificate (the nodes call each other with it) is a client
// certificate of the stack's CA too.
func TestHTTPSNodeCertificate(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	node := nodeSecurity(t, ca)
	base := startTestHTTPS(t, node, okHandler)
	response, _ := get(t, client(ca, node.certificate), base+"/v1/members", nil)
	if response.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", response.StatusCode)
	}
}

func TestHTTPSRefusesClearText(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	plain := &http.Client{Timeout: 10 * time.Second}
	response, err := plain.Get("http://" + strings.TrimPrefix(base, "https://") + "/health")
	if err != nil {
		return
	}
	defer response.Body.Close()
	if response.StatusCode == http.StatusOK {
		t.Fatal("a request in clear was served")
	}
	if response.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want Go's 400", response.StatusCode)
	}
}

func TestHTTPSTLSVersions(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	old := client(ca)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	old.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	if response, err := old.Get(base + "/health"); err == nil {
		response.Body.Close()
		t.Fatal("TLS 1.1 accepted")
	}
	tls12 := client(ca)
	tls12.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
	response, _ := get(t, tls12, base+"/health", bearer(testToken))
	if response.StatusCode != http.StatusOK || response.TLS.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: status %d, version %x", response.StatusCode, response.TLS.Version)
	}
}

func TestHTTPSPortInUse(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := startHTTPS(taken.Addr().String(), nodeSecurity(t, ca).apiConfig(), testToken, okHandler, testLogger()); err == nil {
		t.Fatal("no error for a port in use")
	}
}

// socketClient calls the API over the Unix socket at path.
func socketClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			},
		},
	}
}

func startTestSocket(t *testing.T, path string) {
	t.Helper()
	server, err := startSocket(path, okHandler, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
}

func TestSocketWithoutCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	startTestSocket(t, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want a socket, 0600", info.Mode())
	}
	response, body := get(t, socketClient(path), "http://node/health", nil)
	if response.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("status %d, body %q", response.StatusCode, body)
	}
}

func TestSocketReplacesStaleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	writeFile(t, path, []byte("left by a killed agent"))
	startTestSocket(t, path)
	response, _ := get(t, socketClient(path), "http://node/health", nil)
	if response.StatusCode != http.StatusOK {
		t.Fatalf("status %d", response.StatusCode)
	}
}

func TestSocketRefusesDirectory(t *testing.T) {
	path := t.TempDir()
	if _, err := startSocket(path, okHandler, testLogger()); err == nil {
		t.Fatal("a directory removed for the socket")
	}
}

// TestSocketHealthProbe is Docker's health check of a node
// (components/cluster.py, LOCAL_HEALTH_PROBE): HTTP/1.0, no Host header.
func TestSocketHealthProbe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	startTestSocket(t, path)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /health HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if fields := strings.Fields(line); len(fields) < 2 || fields[1] != "200" {
		t.Fatalf("status line %q", line)
	}
}

// TestDkronRoutes serves Dkron's own routes through the transport the agent
// installs, both ends, as Agent.StartServer calls it.
func TestDkronRoutes(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	config := dkron.DefaultConfig()
	config.NodeName = "node-1"
	config.HTTPAddr = "127.0.0.1:0"
	config.UI = true
	config.EnablePrometheus = true
	config.LogLevel = "error"
	socket := filepath.Join(t.TempDir(), "api.sock")
	node := nodeSecurity(t, ca)
	transport := newAPITransport(dkron.NewAgent(config), config, node, &apiAccess{token: testToken, socket: socket})
	transport.ServeHTTP()
	for _, server := range transport.servers {
		t.Cleanup(func() { _ = server.Close() })
	}
	if len(transport.servers) != 2 {
		t.Fatalf("%d servers started, want 2", len(transport.servers))
	}
	base := "https://" + transport.servers[0].addr.String()

	for _, path := range []string{"/health", "/metrics", "/ui/robots.txt", "/v1", "/no-such-route"} {
		response, _ := get(t, client(ca), base+path, nil)
		if response.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without credentials: status %d", path, response.StatusCode)
		}
	}
	for _, c := range []struct {
		client *http.Client
		base   string
		token  func(*http.Request)
	}{
		{client(ca), base, bearer(testToken)},
		{client(ca, ca.clientCertificate(t, "operator")), base, nil},
		{socketClient(socket), "http://node", nil},
	} {
		response, body := get(t, c.client, c.base+"/health", c.token)
		if response.StatusCode != http.StatusOK || !strings.Contains(body, "healthy") {
			t.Errorf("%s/health: status %d, body %q", c.base, response.StatusCode, body)
		}
		response, body = get(t, c.client, c.base+"/metrics", c.token)
		if response.StatusCode != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("%s/metrics: status %d", c.base, response.StatusCode)
		}
		if whom := response.Header.Get("X-Whom"); whom != "node-1" {
			t.Errorf("%s/metrics: X-Whom %q (Dkron's MetaMiddleware)", c.base, whom)
		}
		response, _ = get(t, c.client, c.base+"/ui/robots.txt", c.token)
		if response.StatusCode != http.StatusOK {
			t.Errorf("%s/ui/robots.txt: status %d", c.base, response.StatusCode)
		}
	}
}

func TestDkronHandlerWithoutOptionalRoutes(t *testing.T) {
	config := dkron.DefaultConfig()
	config.UI = false
	config.EnablePrometheus = false
	path := filepath.Join(t.TempDir(), "api.sock")
	server, err := startSocket(path, dkronHandler(dkron.NewAgent(config), config, testLogger()), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	for route, want := range map[string]int{"/health": 200, "/metrics": 404, "/ui/robots.txt": 404} {
		response, _ := get(t, socketClient(path), "http://node"+route, nil)
		if response.StatusCode != want {
			t.Errorf("%s: status %d, want %d", route, response.StatusCode, want)
		}
	}
}

func readYAML(t *testing.T, text string) *viper.Viper {
	t.Helper()
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	return v
}

const securedConfig = `
tls:
  ca-file: /etc/dkron/tls/ca.pem
  cert-file: /etc/dkron/tls/node.pem
  key-env: DKRON_IAC_NODE_KEY
  api-token-env: DKRON_TEST_API_TOKEN
  local-socket: /tmp/dkron-iac-api.sock
`

func TestLoadAPIAccessReadsThenUnsetsToken(t *testing.T) {
	t.Setenv("DKRON_TEST_API_TOKEN", testToken)
	access, err := loadAPIAccess(readYAML(t, securedConfig), &security{})
	if err != nil {
		t.Fatal(err)
	}
	if access.token != testToken || access.socket != "/tmp/dkron-iac-api.sock" {
		t.Fatalf("access %+v", access)
	}
	if _, set := os.LookupEnv("DKRON_TEST_API_TOKEN"); set {
		t.Fatal("the token is still in the environment")
	}
}

func TestLoadAPIAccessEmptyToken(t *testing.T) {
	t.Setenv("DKRON_TEST_API_TOKEN", "")
	_, err := loadAPIAccess(readYAML(t, securedConfig), &security{})
	if err == nil || !strings.Contains(err.Error(), "DKRON_TEST_API_TOKEN is not set") {
		t.Fatalf("error %v", err)
	}
}

func TestLoadAPIAccessUnsetToken(t *testing.T) {
	t.Setenv("DKRON_TEST_API_TOKEN", "")
	_ = os.Unsetenv("DKRON_TEST_API_TOKEN")
	if _, err := loadAPIAccess(readYAML(t, securedConfig), &security{}); err == nil {
		t.Fatal("no error without the token")
	}
}

func TestLoadAPIAccessWithoutTokenKey(t *testing.T) {
	v := readYAML(t, "tls:\n  ca-file: ca.pem\n  cert-file: node.pem\n  key-env: KEY\n  local-socket: /tmp/x.sock\n")
	access, err := loadAPIAccess(v, &security{})
	if err != nil || access != nil {
		t.Fatalf("access %+v, error %v: want Dkron's transport", access, err)
	}
	if access, err := loadAPIAccess(readYAML(t, "server: true\n"), nil); err != nil || access != nil {
		t.Fatalf("no tls section: access %+v, error %v", access, err)
	}
}

func TestLoadAPIAccessEmptyName(t *testing.T) {
	if _, err := loadAPIAccess(readYAML(t, "tls:\n  api-token-env: \"\"\n"), &security{}); err == nil {
		t.Fatal("no error for an api-token-env naming nothing")
	}
}

func TestLoadAPIAccessNeedsCertificates(t *testing.T) {
	t.Setenv("DKRON_TEST_API_TOKEN", testToken)
	if _, err := loadAPIAccess(readYAML(t, "tls:\n  api-token-env: DKRON_TEST_API_TOKEN\n"), nil); err == nil {
		t.Fatal("no error for a token without the node's certificate")
	}
}

func TestHTTPSRefusesChangesFromAnotherSitesPage(t *testing.T) {
	ca := newAuthority(t, "stack CA")
	base := startTestHTTPS(t, nodeSecurity(t, ca), okHandler)
	host := strings.TrimPrefix(base, "https://")
	cases := []struct {
		name   string
		method string
		header map[string]string
		status int
	}{
		{"a form of another site", http.MethodPost, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"another site, by fetch metadata", http.MethodDelete, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"a sandboxed page", http.MethodPost, map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"the UI's own page", http.MethodPost, map[string]string{"Origin": "https://" + host, "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"a program", http.MethodPost, nil, http.StatusOK},
		{"another site reading", http.MethodGet, map[string]string{"Origin": "https://evil.example"}, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			request, err := http.NewRequest(c.method, base+"/v1/jobs", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			request.SetBasicAuth("me", testToken)
			for k, v := range c.header {
				request.Header.Set(k, v)
			}
			response, err := client(ca).Do(request)
			if err != nil {
				t.Fatal(err)
			}
			_ = response.Body.Close()
			if response.StatusCode != c.status {
				t.Fatalf("status %d, want %d", response.StatusCode, c.status)
			}
		})
	}
}
