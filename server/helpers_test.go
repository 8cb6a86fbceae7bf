package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/graph"
	"github.com/codecrafter/codecrafter/resolvers"
	"github.com/codecrafter/codecrafter/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one server under test.
type env struct {
	*httptest.Server
	srv  *server.Server
	reg  *prometheus.Registry
	logs *logBuffer
	spy  *ctxSpy
}

// newEnv starts a server on the generated schema (whose resolvers panic:
// they have no services) behind a ctxSpy.
func newEnv(t *testing.T, cfg server.Config, deps server.Deps) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	if deps.Schema == nil {
		e.spy = &ctxSpy{ExecutableSchema: newEnvSchema()}
		deps.Schema = e.spy
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	deps.Registerer, deps.Gatherer = e.reg, e.reg
	srv, err := server.New(cfg, deps)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.srv = srv
	e.Server = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Shutdown() // closes WebSockets, which Close would wait for
		e.Close()
	})
	return e
}

// newEnvSchema is the generated schema with resolvers that have no
// services (most of them panic).
func newEnvSchema() graphql.ExecutableSchema {
	return graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})
}

// ctxSpy wraps the schema to record what each operation's context says.
type ctxSpy struct {
	graphql.ExecutableSchema
	mu   sync.Mutex
	seen []opContext
}

type opContext struct {
	UserID, RequestID, ClientAddr string
	AuthErr                       error
}

func (s *ctxSpy) Exec(ctx context.Context) graphql.ResponseHandler {
	oc := opContext{
		UserID:     codecrafter.UserIDFromContext(ctx),
		RequestID:  codecrafter.RequestIDFromContext(ctx),
		ClientAddr: codecrafter.ClientAddrFromContext(ctx),
	}
	if oc.UserID == "" {
		_, oc.AuthErr = codecrafter.RequireUser(ctx)
	}
	s.mu.Lock()
	s.seen = append(s.seen, oc)
	s.mu.Unlock()
	return s.ExecutableSchema.Exec(ctx)
}

// count returns how many operations ran.
func (s *ctxSpy) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// last returns the context of the latest operation.
func (s *ctxSpy) last(t *testing.T) opContext {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		t.Fatal("no operation ran")
	}
	return s.seen[len(s.seen)-1]
}

// gqlResponse is a GraphQL response as clients see it.
type gqlResponse struct {
	Data   map[string]any `json:"data"`
	Errors []gqlError     `json:"errors"`
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// reply is an HTTP answer with its decoded GraphQL body.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
	gqlResponse
}

func (r reply) code(t *testing.T) string {
	t.Helper()
	if len(r.Errors) == 0 {
		t.Fatalf("no errors in %d %s", r.Status, r.Body)
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// post sends a GraphQL request as JSON.
func (e *env) post(t *testing.T, query string, vars map[string]any, header ...string) reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	setHeaders(req, header)
	return do(t, req)
}

// get sends a GraphQL query in the URL.
func (e *env) get(t *testing.T, query string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/graphql?query="+url.QueryEscape(query), nil)
	setHeaders(req, header)
	return do(t, req)
}

func setHeaders(req *http.Request, kv []string) {
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{Status: resp.StatusCode, Header: resp.Header, Body: body}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(body, &r.gqlResponse); err != nil {
			t.Fatalf("decoding %s: %v", body, err)
		}
	}
	return r
}

// logBuffer collects JSON log lines safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged records whose msg is msg.
func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(l, &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
