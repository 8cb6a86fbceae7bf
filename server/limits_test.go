package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/graph"
	"github.com/codecrafter/codecrafter/resolvers"
	"github.com/codecrafter/codecrafter/server"
)

// aliases returns `{ a0: field a1: field ... }` with n aliases.
func aliases(n int, field string) string { return "{" + aliasList("a", n, field) + " }" }

// aliasList returns ` p0: field p1: field ...`.
func aliasList(prefix string, n int, field string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " %s%d: %s", prefix, i, field)
	}
	return b.String()
}

func TestAliasLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	cases := []struct {
		name    string
		query   string
		refused bool
	}{
		{"ten aliases", aliases(10, "__typename"), false},
		{"eleven aliases", aliases(11, "__typename"), true},
		{"the tester's 300", aliases(300, `execution(id: "x") { stdin }`), true},
		{"one key repeated", "{" + strings.Repeat(" a: __typename", 30) + " }", false},
		{"ten of two fields", "{" + aliasList("a", 10, "__typename") + aliasList("b", 10, `execution(id: "x") { id }`) + " }", false},
		{"through fragments", `{ ...A ...B } fragment A on Query { a1: __typename a2: __typename a3: __typename a4: __typename a5: __typename a6: __typename }
			fragment B on Query { b1: __typename b2: __typename b3: __typename b4: __typename b5: __typename }`, true},
		{"a fragment spread twice", `{ ...A ...A a7: __typename } fragment A on Query { a1: __typename a2: __typename a3: __typename a4: __typename a5: __typename a6: __typename }`, false},
		{"nested, merged", `{ s: session(id: "x") { a1: id a2: id a3: id a4: id a5: id a6: id } s: session(id: "x") { b1: id b2: id b3: id b4: id b5: id } }`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.post(t, c.query, nil)
			refused := len(r.Errors) > 0 && strings.Contains(r.Errors[0].Message, "aliases")
			if refused != c.refused {
				t.Fatalf("refused %v, want %v: %d %.300s", refused, c.refused, r.Status, r.Body)
			}
			if refused && (r.Status != http.StatusUnprocessableEntity || r.code(t) != "BAD_USER_INPUT") {
				t.Errorf("refusal: %d %s", r.Status, r.Body)
			}
		})
	}
}

// The alias limit is a gqlgen extension: WebSocket operations get it too.
func TestAliasLimitOverWebsocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	c := mustDialWS(t, e.URL, transportWS)
	c.init(nil)
	ran := e.spy.count()
	typ, payload := c.run("many", aliases(300, `execution(id: "x") { stdin }`))
	var errs []gqlError
	_ = json.Unmarshal(payload, &errs)
	if typ != "error" || len(errs) != 1 || errs[0].Extensions["code"] != "BAD_USER_INPUT" || !strings.Contains(errs[0].Message, "aliases") {
		t.Errorf("%s %s", typ, payload)
	}
	if e.spy.count() != ran {
		t.Error("the refused operation ran")
	}
}

// Large strings and lists cost what they may return, so a small query
// cannot ask for megabytes.
func TestCostOfLargeFieldsAndLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	cases := []struct {
		name    string
		query   string
		vars    map[string]any
		refused bool
	}{
		{"a run with everything", `{ execution(id: "x") { id code stdin stdout stderr compileOutput status } }`, nil, false},
		{"ten runs' stdin", aliases(10, `execution(id: "x") { stdin }`), nil, false},
		{"ten runs' stdin and stdout", aliases(10, `execution(id: "x") { stdin stdout }`), nil, false},
		{"a hundred runs' ids", `{ executions(sessionId: "s", limit: 100) { id status createdAt } }`, nil, false},
		{"a hundred runs' stdout", `{ executions(sessionId: "s", limit: 100) { stdout } }`, nil, true},
		{"the default twenty runs' output", `{ executions(sessionId: "s") { stdout stderr } }`, nil, false},
		{"a hundred runs' everything", `{ executions(sessionId: "s", limit: 100) { code stdin stdout stderr } }`, nil, true},
		{"limit from a variable", `query($n: Int) { executions(sessionId: "s", limit: $n) { stdout } }`, map[string]any{"n": 100}, true},
		{"small limit from a variable", `query($n: Int) { executions(sessionId: "s", limit: $n) { stdout } }`, map[string]any{"n": 5}, false},
		{"every session's code", `{ mySessions { code } }`, nil, false},
		{"every session's title", `{ mySessions { id title participants { role user { name } } } }`, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.post(t, c.query, c.vars)
			refused := len(r.Errors) > 0 && strings.Contains(r.Errors[0].Message, "exceeds the limit")
			if refused != c.refused {
				t.Fatalf("refused %v, want %v: %d %.300s", refused, c.refused, r.Status, r.Body)
			}
			if refused && r.code(t) != "BAD_USER_INPUT" {
				t.Errorf("refusal: %d %s", r.Status, r.Body)
			}
		})
	}
}

// bigRuntimes lists n languages whose names are size bytes long.
type bigRuntimes struct{ n, size int }

func (b bigRuntimes) Runtimes() []codecrafter.Runtime {
	out := make([]codecrafter.Runtime, b.n)
	for i := range out {
		out[i] = codecrafter.Runtime{Language: fmt.Sprint("l", i), Name: strings.Repeat("n", b.size), Version: "1"}
	}
	return out
}

func (bigRuntimes) Lookup(string) (codecrafter.Runtime, bool) { return codecrafter.Runtime{}, false }

func TestResponseSizeLimit(t *testing.T) {
	t.Parallel()
	schema := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{Runtimes: bigRuntimes{n: 10, size: 100 << 10}}})
	e := newEnv(t, server.Config{MaxResponseBytes: 512 << 10}, server.Deps{Schema: schema})
	tooLarge := func(t *testing.T, body []byte, errs []gqlError, data map[string]any) {
		t.Helper()
		if len(errs) != 1 || errs[0].Extensions["code"] != "BAD_USER_INPUT" || !strings.Contains(errs[0].Message, "larger than the limit of 524288 bytes") {
			t.Fatalf("errors %+v", errs)
		}
		if errs[0].Extensions["requestId"] == "" || data != nil {
			t.Errorf("requestId %v, data %v", errs[0].Extensions["requestId"], data)
		}
		if len(body) > 4096 {
			t.Errorf("the refusal is %d bytes", len(body))
		}
	}

	// 10 names of 100 KiB: over the 512 KiB budget while resolving.
	r := e.post(t, `{ languages { name } }`, nil)
	if r.Status != http.StatusOK {
		t.Errorf("status %d", r.Status)
	}
	tooLarge(t, r.Body, r.Errors, r.Data)
	// Under it, the same data comes through.
	r = e.post(t, `{ languages { language version } }`, nil)
	if len(r.Errors) > 0 || len(r.Data["languages"].([]any)) != 10 {
		t.Errorf("a small answer: %.300s", r.Body)
	}

	// The same over a WebSocket.
	c := mustDialWS(t, e.URL, transportWS)
	c.init(nil)
	typ, payload := c.run("big", `{ languages { name } }`)
	var resp gqlResponse
	_ = json.Unmarshal(payload, &resp)
	if typ != "next" {
		t.Errorf("%s %.300s", typ, payload)
	}
	tooLarge(t, payload, resp.Errors, resp.Data)
}

// The marshalled response is checked exactly, whatever the fields are.
func TestResponseSizeLimitIsExact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{MaxResponseBytes: 30}, server.Deps{})
	if r := e.post(t, `{ __typename }`, nil); len(r.Errors) > 0 { // {"__typename":"Query"}: 22 bytes
		t.Errorf("under the limit: %s", r.Body)
	}
	r := e.post(t, `{ a: __typename b: __typename c: __typename }`, nil) // 37 bytes
	if len(r.Errors) != 1 || r.code(t) != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "larger than the limit of 30 bytes") || r.Data != nil {
		t.Errorf("over the limit: %s", r.Body)
	}
}

// With TrustedProxies, the client address is the hop our outermost proxy
// appended: what the client writes further left changes nothing (the
// login limiter keys on this address).
func TestClientAddrBehindProxies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		proxies int
		xff     []string
		want    string
	}{
		{0, []string{"203.0.113.9"}, "127.0.0.1"},
		{1, nil, "127.0.0.1"},
		{1, []string{"203.0.113.9"}, "203.0.113.9"},
		{1, []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{1, []string{"6.6.6.6,7.7.7.7 ,  203.0.113.9"}, "203.0.113.9"},
		{1, []string{"garbage, 203.0.113.9"}, "203.0.113.9"},
		{1, []string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"}, // two header lines
		{1, []string{"203.0.113.9:5555"}, "203.0.113.9"},
		{1, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{1, []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{1, []string{"garbage"}, "127.0.0.1"},
		{2, []string{"6.6.6.6, 198.51.100.7, 10.0.0.1"}, "198.51.100.7"},
		{2, []string{"198.51.100.7"}, "127.0.0.1"}, // shorter than the proxy chain
	} {
		e := newEnv(t, server.Config{TrustedProxies: c.proxies}, server.Deps{})
		body := strings.NewReader(`{"query": "{ __typename }"}`)
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", body)
		req.Header.Set("Content-Type", "application/json")
		for _, v := range c.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		do(t, req)
		if got := e.spy.last(t).ClientAddr; got != c.want {
			t.Errorf("%d proxies, X-Forwarded-For %q: client %q, want %q", c.proxies, c.xff, got, c.want)
		}
	}
}

// A run's 1 MiB of stdin fits in a body even when every byte is escaped
// as \u00XX, and so do WebSocket messages.
func TestBodyLimitFitsTheLargestRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: func(context.Context, string) (string, error) { return "u1", nil }})
	in := map[string]any{"language": "python", "code": strings.Repeat("\x01", codecrafter.MaxCodeLen), "stdin": strings.Repeat("\x01", codecrafter.MaxStdinLen)}
	// The resolver has no service (it panics: INTERNAL): reaching it is
	// what counts.
	q := `mutation($in: ExecuteInput!) { execute(input: $in) { id } }`
	ran := e.spy.count()
	r := e.post(t, q, map[string]any{"in": in}, "Authorization", "Bearer t")
	if r.Status != http.StatusOK || r.code(t) != "INTERNAL" || e.spy.count() != ran+1 {
		t.Errorf("HTTP: %d %.300s", r.Status, r.Body)
	}
	c := mustDialWS(t, e.URL, transportWS)
	c.init(map[string]any{"authorization": "Bearer t"})
	p, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]any{"in": in}})
	c.send(wsMsg{Type: "subscribe", ID: "big", Payload: p})
	if m := c.expect("next"); !strings.Contains(string(m.Payload), "INTERNAL") || e.spy.count() != ran+2 {
		t.Errorf("WebSocket: %s", m.Payload)
	}
}

func TestMetricsAreNotOnTheAPIHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	if r := do(t, mustRequest(t, http.MethodGet, e.URL+"/metrics")); r.Status != http.StatusNotFound {
		t.Errorf("/metrics on the API handler: %d", r.Status)
	}
}
