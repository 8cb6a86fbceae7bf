// Package server is CodeCrafter's HTTP surface: GraphQL over POST, GET and
// WebSocket on /graphql (gqlgen), the web client on /, GraphiQL on
// /graphiql, health and
// readiness probes, Prometheus metrics (on a handler of their own), and
// the hardening around them (request ids, auth, CORS, security headers,
// body, depth, alias, complexity and response size limits, one error
// presenter).
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/web"
)

// Config tunes the server. The zero value is a safe production setup:
// introspection, suggestions and GraphiQL off, no cross-origin access, and
// the limits below. A negative limit disables that limit.
type Config struct {
	// AllowedOrigins are the cross-origin callers (CORS and WebSocket
	// Origin), as scheme://host[:port]. Same-origin requests and requests
	// without an Origin header are always allowed. No wildcards.
	AllowedOrigins []string
	// Introspection enables __schema/__type queries (GraphiQL needs it).
	Introspection bool
	// Suggestions enables "Did you mean ...?" hints in validation errors.
	Suggestions bool
	// GraphiQL serves the GraphiQL IDE on GET /graphiql.
	GraphiQL bool
	// TrustedProxies is how many proxies of ours stand in front of the
	// server, each appending its peer to X-Forwarded-For: the client
	// address is the hop the outermost one appended, the TrustedProxies-th
	// address from the right of the X-Forwarded-For hops followed by the
	// connection's peer. Hops further left are the client's to write and
	// are ignored. 0: the connection's peer.
	TrustedProxies int

	// MaxBodyBytes caps a request body (default 8 MiB: a run's 1 MiB of
	// stdin and 64 KiB of code fit even as JSON's 6-byte \u escapes);
	// larger gets 413.
	MaxBodyBytes int64
	// ComplexityLimit caps an operation's complexity (default 1000),
	// counted with Costs.
	ComplexityLimit int
	// Costs are the complexity costs of fields that return much (default
	// DefaultCosts); other fields cost 1.
	Costs map[string]Cost
	// AliasLimit caps how many aliases of one field a selection set may
	// ask for (default 10).
	AliasLimit int
	// MaxResponseBytes caps the JSON of one response, each subscription
	// event being one (default 8 MiB); a larger one is replaced by a
	// BAD_USER_INPUT error.
	MaxResponseBytes int64
	// DepthLimit caps the nesting of fields, fragments included and
	// introspection fields excluded (default 12).
	DepthLimit int
	// ParserTokenLimit caps the tokens of a query document (default 10000).
	ParserTokenLimit int
	// RequestTimeout bounds an HTTP GraphQL request's context (default
	// 30s); WebSockets are not affected.
	RequestTimeout time.Duration
	// ReadyTimeout bounds each readiness check (default 2s).
	ReadyTimeout time.Duration

	// WebSocketKeepAlive is the interval of keep-alive messages: ping on
	// graphql-transport-ws (answered by pong), "ka" and a WebSocket ping
	// on graphql-ws (whose clients answer it by themselves). A socket that
	// receives nothing for two intervals and a second is closed, so a dead
	// peer goes (and its presence with it). Default 15s.
	WebSocketKeepAlive time.Duration
	// WebSocketInitTimeout is how long a socket may stay without
	// connection_init (default 10s).
	WebSocketInitTimeout time.Duration
	// WebSocketReadLimit caps one WebSocket message (default MaxBodyBytes).
	WebSocketReadLimit int64
	// WebSocket bounds sockets per user and address and operations per socket.
	WebSocket WebSocketLimits
	// ReplicaName, when set, is sent as X-Codecrafter-Replica on every
	// response (WebSocket upgrades too), so that a client behind a load
	// balancer can tell which replica answered.
	ReplicaName string
}

// Defaults of the zero fields of Config.
const (
	DefaultMaxBodyBytes         = 8 << 20
	DefaultComplexityLimit      = 1000
	DefaultAliasLimit           = 10
	DefaultMaxResponseBytes     = 8 << 20
	DefaultDepthLimit           = 12
	DefaultParserTokenLimit     = 10000
	DefaultRequestTimeout       = 30 * time.Second
	DefaultReadyTimeout         = 2 * time.Second
	DefaultWebSocketKeepAlive   = 15 * time.Second
	DefaultWebSocketInitTimeout = 10 * time.Second
)

func (c *Config) setDefaults() {
	setDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&c.ComplexityLimit, DefaultComplexityLimit)
	setDefault(&c.AliasLimit, DefaultAliasLimit)
	setDefault(&c.MaxResponseBytes, DefaultMaxResponseBytes)
	if c.Costs == nil {
		c.Costs = DefaultCosts
	}
	setDefault(&c.DepthLimit, DefaultDepthLimit)
	setDefault(&c.ParserTokenLimit, DefaultParserTokenLimit)
	setDefault(&c.RequestTimeout, DefaultRequestTimeout)
	setDefault(&c.ReadyTimeout, DefaultReadyTimeout)
	setDefault(&c.WebSocketKeepAlive, DefaultWebSocketKeepAlive)
	setDefault(&c.WebSocketInitTimeout, DefaultWebSocketInitTimeout)
	setDefault(&c.WebSocketReadLimit, c.MaxBodyBytes)
	c.WebSocket.setDefaults()
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Deps are what the server calls out to.
type Deps struct {
	// Schema is the generated executable schema (required).
	Schema graphql.ExecutableSchema
	// Authenticate checks an access token and returns its user id. A
	// refused token should be an UNAUTHENTICATED *codecrafter.Error saying
	// why (expired, malformed...). Nil: every caller is anonymous.
	Authenticate func(ctx context.Context, accessToken string) (userID string, err error)
	// Verify is Authenticate with the token's claims (expiry, login
	// family), so that a WebSocket closes when its token expires or its
	// login is revoked. It is used instead of Authenticate when set.
	Verify func(ctx context.Context, accessToken string) (codecrafter.Claims, error)
	// Access, when set, closes WebSockets of revoked logins.
	Access *access.Hub
	// Ready are the readiness checks /readyz runs, by name (store, bus...).
	Ready map[string]func(context.Context) error
	// Logger receives access logs and errors (nil: discard).
	Logger *slog.Logger
	// Registerer gets the server's metrics and Gatherer is served on
	// MetricsHandler's /metrics. Both nil: a private registry. Gatherer nil: the Registerer
	// when it is also a Gatherer (like *prometheus.Registry).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// WebApp is the built web client served on / (nil: package web's Dist).
	WebApp fs.FS
}

// Server is the HTTP surface. Build it with New.
type Server struct {
	cfg      Config
	wsGroups wsGroups
	queries  interned
	deps     Deps
	log      *slog.Logger
	origins  originPolicy
	metrics  *metrics
	handler  http.Handler

	// shutdown is cancelled by Shutdown: /readyz turns 503 and every
	// WebSocket closes (http.Server.Shutdown leaves hijacked ones alone).
	shutdown     context.Context
	shutdownOnce sync.Once
	stop         context.CancelFunc

	sockets *sockets
}

// New builds a server. It fails on a missing schema, a malformed allowed
// origin, or metrics that cannot be registered.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Schema == nil {
		return nil, errors.New("server: Deps.Schema is required")
	}
	cfg.setDefaults()
	origins, err := newOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.WebApp == nil {
		deps.WebApp = web.Dist()
	}
	if deps.Registerer == nil && deps.Gatherer == nil {
		reg := prometheus.NewRegistry()
		deps.Registerer, deps.Gatherer = reg, reg
	}
	if deps.Gatherer == nil {
		g, ok := deps.Registerer.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("server: Deps.Gatherer is required when the Registerer is not a Gatherer")
		}
		deps.Gatherer = g
	}
	if deps.Registerer == nil {
		return nil, errors.New("server: Deps.Registerer is required with a Gatherer")
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("server: registering metrics: %w", err)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, origins: origins, metrics: m, sockets: newSockets(cfg.WebSocket)}
	s.shutdown, s.stop = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// PresentError is the server's error presenter, for errors that reach a
// client without passing through gqlgen's (subscription errors).
func (s *Server) PresentError(ctx context.Context, err error) *gqlerror.Error {
	return s.presentError(ctx, err)
}

// Handler returns the root handler with every route and middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// Shutdown makes /readyz answer 503 and closes every WebSocket (1000,
// "terminated"), cancelling their subscriptions. HTTPServer registers it
// with http.Server.RegisterOnShutdown; call it earlier to drain first.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.log.Info("server shutting down: closing websockets")
		s.stop()
		for _, st := range s.sockets.live() {
			st.cancel()
			st.endSocket()
		}
	})
}

// graphQLHandler is gqlgen's server with our transports, limits and
// presenter.
func (s *Server) graphQLHandler() http.Handler {
	h := handler.New(s.deps.Schema)
	h.AddTransport(wsTransport{s})
	h.AddTransport(transport.Options{})
	h.AddTransport(transport.GET{})
	h.AddTransport(transport.POST{})

	h.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	h.SetErrorPresenter(s.presentError)
	h.SetRecoverFunc(s.recoverPanic)
	h.SetDisableSuggestion(!s.cfg.Suggestions)
	if s.cfg.ParserTokenLimit > 0 {
		h.SetParserTokenLimit(s.cfg.ParserTokenLimit)
	}

	// Operation context mutators (transportGuard, noIntrospection,
	// queryShape, aliasLimit, costLimit) may read only the document, the
	// variables and the transport: WebSocket subscriptions of the same
	// document, operation and variables share one OperationContext,
	// whoever sends them (wsGroups).
	h.Use(s.metrics) // first, so it sees every operation and error
	h.Use(transportGuard{})
	h.Use(websocketOperations{s})
	if s.cfg.Introspection {
		h.Use(extension.Introspection{})
	} else {
		h.Use(noIntrospection{})
	}
	h.Use(queryShape{maxDepth: s.cfg.DepthLimit, maxFields: maxExpandedFields})
	if s.cfg.AliasLimit > 0 {
		h.Use(aliasLimit{max: s.cfg.AliasLimit})
	}
	if s.cfg.ComplexityLimit > 0 {
		h.Use(&costLimit{limit: s.cfg.ComplexityLimit, costs: s.cfg.Costs})
	}
	if s.cfg.MaxResponseBytes > 0 {
		h.Use(responseLimit{max: s.cfg.MaxResponseBytes, present: s.presentError})
	}
	return h
}
