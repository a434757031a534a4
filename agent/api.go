package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
	"github.com/spf13/viper"
)

// The `tls:` section's keys for the HTTP API (components/node_config.py). With
// api-token-env the API is served over HTTPS to callers with the stack's token
// or a client certificate of its CA; without it, it is Dkron's own, in clear
// (a stack made between the two steps of the move to TLS).
const (
	apiTokenEnvKey = "tls.api-token-env"
	localSocketKey = "tls.local-socket"
)

// apiAccess is what the HTTPS API lets in, and where the node's own
// processes (watcher, exporter, Docker's health check) call it without the
// token.
type apiAccess struct {
	token  string
	socket string
}

// loadAPIAccess reads the token from the variable api-token-env names, once,
// and removes it from the environment: jobs inherit the agent's environment
// and must not see it. nil without api-token-env (local-socket alone is then
// ignored: the API stays Dkron's).
func loadAPIAccess(v *viper.Viper, s *security) (*apiAccess, error) {
	name := v.GetString(apiTokenEnvKey)
	if name == "" {
		if v.IsSet(apiTokenEnvKey) {
			return nil, errors.New("config: tls.api-token-env names no variable")
		}
		return nil, nil
	}
	if s == nil {
		return nil, errors.New("config: tls.api-token-env needs ca-file, cert-file and a key in the tls section")
	}
	token := os.Getenv(name)
	_ = os.Unsetenv(name)
	if token == "" {
		return nil, fmt.Errorf("tls: the API token: %s is not set", name)
	}
	return &apiAccess{token: token, socket: v.GetString(localSocketKey)}, nil
}

// apiTransport takes the place of Dkron's HTTPTransport (Agent.HTTPTransport):
// the same routes, served over HTTPS with credentials on http-addr and in
// clear on the node's socket.
type apiTransport struct {
	agent  *dkron.Agent
	config *dkron.Config
	tls    *tls.Config
	access *apiAccess
	logger *logrus.Entry

	// servers are those ServeHTTP started (the tests read their addresses).
	servers []*apiServer
}

func newAPITransport(agent *dkron.Agent, config *dkron.Config, s *security, access *apiAccess) *apiTransport {
	return &apiTransport{
		agent:  agent,
		config: config,
		tls:    s.apiConfig(),
		access: access,
		// The logger Dkron gives its own transport (Agent.Start's).
		logger: dkron.InitLogger(config.LogLevel, config.NodeName),
	}
}

// ServeHTTP is Agent.StartServer's call, after the configured addresses are
// resolved. Like Dkron's, it returns at once: the servers run in the
// background, and one that cannot listen is logged, not fatal (the node keeps
// its RPC port).
func (t *apiTransport) ServeHTTP() {
	handler := dkronHandler(t.agent, t.config, t.logger)
	server, err := startHTTPS(t.config.HTTPAddr, t.tls, t.access.token, handler, t.logger)
	if err != nil {
		t.logger.WithError(err).Error("api: Error starting HTTP server")
	} else {
		t.servers = append(t.servers, server)
		t.logger.WithField("address", server.addr.String()).
			Info("api: Running HTTPS server (token or client certificate)")
	}
	if t.access.socket == "" {
		return
	}
	// The node's own processes also reach the catch-up guard there (catchup.go).
	local := http.NewServeMux()
	local.Handle(catchUpPath, newCatchUpGuard(t.agent, t.logger))
	local.Handle("/", handler)
	server, err = startSocket(t.access.socket, local, t.logger)
	if err != nil {
		t.logger.WithError(err).WithField("socket", t.access.socket).Error("api: Error starting the socket's HTTP server")
		return
	}
	t.servers = append(t.servers, server)
	t.logger.WithField("socket", t.access.socket).Info("api: Running HTTP server on the node's socket (no credentials)")
}

// dkronHandler is the gin engine Dkron 4.0.5's HTTPTransport.ServeHTTP builds
// (dkron/api.go), its routes registered by Dkron's own exported methods on
// one of its transports: APIRoutes (/health, /debug/vars, /metrics with
// enable-prometheus, /v1/...), UI (/, /ui/... with ui) and MetaMiddleware.
// Only the CORS settings, a literal inside ServeHTTP, are copied here.
func dkronHandler(agent *dkron.Agent, config *dkron.Config, logger *logrus.Entry) http.Handler {
	h := dkron.NewTransport(agent, logger)
	h.Engine = gin.Default()
	root := h.Engine.Group("/")
	corsConfig := cors.DefaultConfig()
	corsConfig.AllowAllOrigins = true
	corsConfig.AllowMethods = []string{"*"}
	corsConfig.AllowHeaders = []string{"*"}
	corsConfig.ExposeHeaders = []string{"*"}
	root.Use(cors.New(corsConfig))
	root.Use(h.MetaMiddleware())
	h.APIRoutes(root)
	if config.UI {
		h.UI(root, false)
	}
	return h.Engine.Handler()
}
