package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/server"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	e.post(t, `query Hello { __typename }`, nil)
	e.get(t, `query Hello { __typename }`)
	e.post(t, `query Langs { languages { name } }`, nil) // panics: INTERNAL
	e.post(t, `query Broken { nope }`, nil)              // refused before running
	e.get(t, `mutation Out { logout(refreshToken: "x") }`)

	ops := "codecrafter_graphql_operations_total"
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"operation": "Hello", "type": "query", "code": "OK"}, 2},
		{map[string]string{"operation": "Langs", "type": "query", "code": "INTERNAL"}, 1},
		{map[string]string{"operation": "anonymous", "type": "unknown", "code": "BAD_USER_INPUT"}, 1},
		{map[string]string{"operation": "Out", "type": "mutation", "code": "BAD_USER_INPUT"}, 1},
	} {
		if got := promtest.Value(t, e.reg, ops, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", ops, c.labels, got, c.want)
		}
	}
	if got := promtest.Value(t, e.reg, "codecrafter_graphql_operation_duration_seconds", map[string]string{"operation": "Hello", "type": "query"}); got != 2 {
		t.Errorf("operation latency observations %v, want 2", got)
	}
	if got := promtest.Value(t, e.reg, "codecrafter_http_requests_total", map[string]string{"route": "/graphql", "method": "POST", "status": "422"}); got != 1 {
		t.Errorf("POST 422 requests %v, want 1", got)
	}
	if got := promtest.Value(t, e.reg, "codecrafter_http_request_duration_seconds", map[string]string{"route": "/graphql"}); got != 5 {
		t.Errorf("latency observations %v, want 5", got)
	}

	// MetricsHandler's /metrics serves the given registry in the text
	// format.
	ms := httptest.NewServer(e.srv.MetricsHandler())
	defer ms.Close()
	r := do(t, mustRequest(t, http.MethodGet, ms.URL+"/metrics"))
	line := `codecrafter_graphql_operations_total{code="OK",operation="Hello",type="query"} 2`
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), line) {
		t.Errorf("/metrics: %d, no %q in\n%.2000s", r.Status, line, r.Body)
	}
	if got := promtest.Value(t, e.reg, "codecrafter_websocket_connections", nil); got != 0 {
		t.Errorf("websocket gauge %v", got)
	}
}

func TestOperationNameCardinalityIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	long := strings.Repeat("N", 100)
	e.post(t, `query `+long+` { __typename }`, nil)
	for i := range 250 {
		e.post(t, fmt.Sprintf(`query Op%d { __typename }`, i), nil)
	}
	names := map[string]bool{}
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "codecrafter_graphql_operations_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					names[l.GetValue()] = true
				}
			}
		}
	}
	if len(names) > 201 || !names["other"] || !names[long[:64]] {
		t.Errorf("%d operation labels (other: %v, truncated name: %v)", len(names), names["other"], names[long[:64]])
	}
}

func TestMetricsNeedAGatherer(t *testing.T) {
	t.Parallel()
	var onlyRegisterer prometheus.Registerer = struct{ prometheus.Registerer }{prometheus.NewRegistry()}
	if _, err := server.New(server.Config{}, server.Deps{Schema: newEnvSchema(), Registerer: onlyRegisterer}); err == nil {
		t.Error("a Registerer that cannot be gathered was accepted")
	}
	// The same registry twice: the second registration fails cleanly.
	reg := prometheus.NewRegistry()
	if _, err := server.New(server.Config{}, server.Deps{Schema: newEnvSchema(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.New(server.Config{}, server.Deps{Schema: newEnvSchema(), Registerer: reg}); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
}
