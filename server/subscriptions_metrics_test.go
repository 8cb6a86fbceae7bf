package server_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/server"
)

// TestSubscriptionsGauge: codecrafter_ws_subscriptions counts a live
// subscription by its root field from its start until the client stops it.
func TestSubscriptionsGauge(t *testing.T) {
	t.Parallel()
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { a: String }
		type Subscription { tick: String! }
	`})
	started := make(chan struct{}, 1)
	e := newEnv(t, server.Config{}, server.Deps{Schema: &graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 0, false
		},
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			started <- struct{}{}
			return func(ctx context.Context) *graphql.Response {
				<-ctx.Done() // live until stopped
				return nil
			}
		},
	}})
	gauge := func() float64 {
		return promtest.Value(t, e.reg, "codecrafter_ws_subscriptions", map[string]string{"field": "tick"})
	}
	c := mustDialWS(t, e.URL, transportWS)
	c.init(nil)
	p, _ := json.Marshal(map[string]any{"query": `subscription Ticks { ... on Subscription { tick } }`})
	c.send(wsMsg{Type: "subscribe", ID: "1", Payload: p})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription never started")
	}
	if n := gauge(); n != 1 {
		t.Fatalf("gauge %v with one subscription live", n)
	}
	c.send(wsMsg{Type: "complete", ID: "1"})
	waitFor(t, "the subscription to be accounted ended", func() bool { return gauge() == 0 })
}
