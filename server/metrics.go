package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/codecrafter/codecrafter/push"
)

// Label bounds: operation names are client-chosen.
const (
	maxOperationNames   = 200 // distinct names; later new ones count as "other"
	maxOperationNameLen = 64
)

// metrics holds the server's collectors; as a gqlgen extension it counts
// GraphQL operations by name, type and error code.
type metrics struct {
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	operations     *prometheus.CounterVec
	opDuration     *prometheus.HistogramVec
	wsActive       prometheus.Gauge
	subscriptions  *prometheus.GaugeVec
	slowSockets    prometheus.Counter
	operationNames nameSet
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_http_requests_total",
			Help: "HTTP requests by route, method and status code (101 for WebSocket upgrades, counted when the socket closes).",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codecrafter_http_request_duration_seconds",
			Help:    "HTTP request latency by route (WebSockets excluded).",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_graphql_operations_total",
			Help: `GraphQL operations by operation name, type and error code ("OK" without errors).`,
		}, []string{"operation", "type", "code"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codecrafter_graphql_operation_duration_seconds",
			Help:    "Latency of GraphQL queries and mutations by operation name and type.",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation", "type"}),
		wsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codecrafter_websocket_connections",
			Help: "Open GraphQL WebSocket connections.",
		}),
		subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "codecrafter_ws_subscriptions",
			Help: "Live GraphQL subscriptions by root field.",
		}, []string{"field"}),
		slowSockets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codecrafter_websocket_slow_closed_total",
			Help: "WebSockets closed (1013) because the client did not read its messages in time.",
		}),
		operationNames: nameSet{names: map[string]bool{}},
	}
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.operations, m.opDuration, m.wsActive, m.subscriptions, m.slowSockets} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = (*metrics)(nil)

func (*metrics) ExtensionName() string                   { return "Metrics" }
func (*metrics) Validate(graphql.ExecutableSchema) error { return nil }

// countedKey marks operations InterceptOperation counts, so
// InterceptResponse only counts those refused before they ran.
type countedKey struct{}

// InterceptOperation counts an operation once: at its response, or for a
// subscription at its first error or its end.
func (m *metrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	opCtx := graphql.GetOperationContext(ctx)
	name, typ := m.labels(opCtx)
	start := opCtx.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	if typ == string(ast.Subscription) {
		// Live from here until its context ends (the transport ends it
		// when the subscription completes, fails or the socket closes).
		g := m.subscriptions.WithLabelValues(rootField(opCtx))
		g.Inc()
		push.OnEnd(ctx, g.Dec)
	}
	responses := next(context.WithValue(ctx, countedKey{}, true))
	done := false
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if done || (typ == string(ast.Subscription) && resp != nil && len(resp.Errors) == 0) {
			return resp
		}
		done = true
		m.operations.WithLabelValues(name, typ, responseCode(resp)).Inc()
		if typ != string(ast.Subscription) {
			m.opDuration.WithLabelValues(name, typ).Observe(time.Since(start).Seconds())
		}
		return resp
	}
}

// InterceptResponse counts operations refused before running (parse,
// validation, limits): they never reach InterceptOperation.
func (m *metrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if ctx.Value(countedKey{}) == nil && graphql.HasOperationContext(ctx) {
		name, typ := m.labels(graphql.GetOperationContext(ctx))
		m.operations.WithLabelValues(name, typ, responseCode(resp)).Inc()
	}
	return resp
}

func (m *metrics) labels(opCtx *graphql.OperationContext) (name, typ string) {
	if opCtx.Operation == nil {
		return "anonymous", "unknown"
	}
	return m.operationNames.label(opCtx.Operation.Name), string(opCtx.Operation.Operation)
}

// rootField names an operation's first root field; validation bounds the
// names to the schema's.
func rootField(opCtx *graphql.OperationContext) string {
	set := opCtx.Operation.SelectionSet
	for len(set) > 0 {
		switch sel := set[0].(type) {
		case *ast.Field:
			return sel.Name
		case *ast.InlineFragment:
			set = sel.SelectionSet
		case *ast.FragmentSpread:
			f := opCtx.Doc.Fragments.ForName(sel.Name)
			if f == nil {
				return "unknown"
			}
			set = f.SelectionSet
		default:
			return "unknown"
		}
	}
	return "unknown"
}

// responseCode is the first error's extensions.code, or "OK".
func responseCode(resp *graphql.Response) string {
	if resp == nil || len(resp.Errors) == 0 {
		return "OK"
	}
	if code, ok := resp.Errors[0].Extensions["code"].(string); ok && contractCodes[code] {
		return code
	}
	return "INTERNAL"
}

// nameSet bounds the operation label: the first maxOperationNames names
// seen keep their own series.
type nameSet struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *nameSet) label(name string) string {
	if name == "" {
		return "anonymous"
	}
	name = truncate(name, maxOperationNameLen)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.names[name] {
		if len(s.names) >= maxOperationNames {
			return "other"
		}
		s.names[name] = true
	}
	return name
}

// observeHTTP records one finished HTTP request.
func (m *metrics) observeHTTP(route, method string, status int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, methodLabel(method), strconv.Itoa(status)).Inc()
	if status != 101 {
		m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
	}
}

func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "OTHER"
}
