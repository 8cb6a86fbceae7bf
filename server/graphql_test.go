package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter/server"
)

func TestQueryOverPOSTAndGET(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	for name, r := range map[string]reply{
		"POST": e.post(t, `query Hello { __typename }`, nil),
		"GET":  e.get(t, `{ __typename }`),
	} {
		if r.Status != http.StatusOK || r.Data["__typename"] != "Query" || len(r.Errors) > 0 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, cc)
		}
	}
}

func TestTransportRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	cases := []struct {
		name     string
		req      func() reply
		status   int
		inMsg    string
		executes bool
	}{
		{"mutation over GET", func() reply {
			return e.get(t, `mutation { logout(refreshToken: "x") }`)
		}, http.StatusUnprocessableEntity, "GET requests can only run queries", false},
		{"subscription over POST", func() reply {
			return e.post(t, `subscription { messageAdded(sessionId: "s") { id } }`, nil)
		}, http.StatusUnprocessableEntity, "WebSocket", false},
		{"PUT", func() reply {
			req, _ := http.NewRequest(http.MethodPut, e.URL+"/graphql", strings.NewReader(`{}`))
			return do(t, req)
		}, http.StatusMethodNotAllowed, "use POST", false},
		{"form POST", func() reply {
			req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(`query={__typename}`))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return do(t, req)
		}, http.StatusUnsupportedMediaType, "application/json", false},
		{"body not JSON", func() reply {
			req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(`{"query": `))
			req.Header.Set("Content-Type", "application/json")
			return do(t, req)
		}, http.StatusBadRequest, "not a valid GraphQL JSON request", false},
		{"GET variables not JSON", func() reply {
			req, _ := http.NewRequest(http.MethodGet, e.URL+"/graphql?query=%7B__typename%7D&variables=%7B", nil)
			return do(t, req)
		}, http.StatusBadRequest, "variables", false},
		{"parse error", func() reply {
			return e.post(t, `{ __typename `, nil)
		}, http.StatusUnprocessableEntity, "Expected", false},
		{"unknown field", func() reply {
			return e.post(t, `{ nope }`, nil)
		}, http.StatusUnprocessableEntity, `Cannot query field "nope"`, false},
		{"not a WebSocket upgrade", func() reply {
			req, _ := http.NewRequest(http.MethodGet, e.URL+"/graphql", nil)
			req.Header.Set("Upgrade", "h2c")
			return do(t, req)
		}, http.StatusBadRequest, "WebSocket", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.req()
			if r.Status != c.status {
				t.Errorf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if got := r.code(t); got != "BAD_USER_INPUT" {
				t.Errorf("code %q, want BAD_USER_INPUT", got)
			}
			if !strings.Contains(r.Errors[0].Message, c.inMsg) {
				t.Errorf("message %q does not say %q", r.Errors[0].Message, c.inMsg)
			}
			if r.Errors[0].Extensions["requestId"] != r.Header.Get("X-Request-ID") {
				t.Errorf("requestId %v, header %q", r.Errors[0].Extensions["requestId"], r.Header.Get("X-Request-ID"))
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})

	// A sane incoming id is kept, in the header, the context, the errors
	// and the logs.
	r := e.post(t, `{ nope }`, nil, "X-Request-ID", "client-id-42")
	if got := r.Header.Get("X-Request-ID"); got != "client-id-42" {
		t.Errorf("X-Request-ID %q, want the client's", got)
	}
	if got := r.Errors[0].Extensions["requestId"]; got != "client-id-42" {
		t.Errorf("extensions.requestId %v", got)
	}
	logged := false
	for _, l := range e.logs.lines("request") {
		logged = logged || l["request_id"] == "client-id-42"
	}
	if !logged {
		t.Error("access log line without the request id")
	}

	e.post(t, `{ __typename }`, nil, "X-Request-ID", "ctx-id")
	if got := e.spy.last(t).RequestID; got != "ctx-id" {
		t.Errorf("context request id %q", got)
	}

	// Anything else gets a fresh id.
	for _, bad := range []string{"", "has space", "a\"quote", strings.Repeat("x", 65)} {
		r := e.post(t, `{ __typename }`, nil, "X-Request-ID", bad)
		got := r.Header.Get("X-Request-ID")
		if got == "" || got == bad {
			t.Errorf("incoming %q: got %q, want a generated id", bad, got)
		}
	}
	a := e.post(t, `{ __typename }`, nil).Header.Get("X-Request-ID")
	b := e.post(t, `{ __typename }`, nil).Header.Get("X-Request-ID")
	if a == b {
		t.Errorf("two requests share id %q", a)
	}
}

func TestPanickingResolverIsInternal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	// The resolvers have no services: languages dereferences a nil one.
	r := e.post(t, `{ languages { name } }`, nil, "X-Request-ID", "panic-1")
	if r.Status != http.StatusOK {
		t.Errorf("status %d", r.Status)
	}
	if got := r.code(t); got != "INTERNAL" {
		t.Fatalf("code %q, want INTERNAL: %s", got, r.Body)
	}
	if r.Errors[0].Message != "internal error" {
		t.Errorf("message %q reveals internals", r.Errors[0].Message)
	}
	if bytes.Contains(r.Body, []byte("nil pointer")) || bytes.Contains(r.Body, []byte("goroutine")) {
		t.Errorf("body reveals the panic: %s", r.Body)
	}
	panics := e.logs.lines("panic serving GraphQL")
	if len(panics) != 1 || panics[0]["request_id"] != "panic-1" || !strings.Contains(fmt.Sprint(panics[0]["stack"]), "resolvers") {
		t.Errorf("panic log lines %v, want one with the request id and a stack", panics)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	big := `{"query": "{ __typename }", "variables": {"pad": "` + strings.Repeat("x", server.DefaultMaxBodyBytes) + `"}}`
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(big))
		if chunked { // no Content-Length: the limit applies while reading
			req.ContentLength = -1
			req.Body = io.NopCloser(struct{ io.Reader }{strings.NewReader(big)})
		}
		req.Header.Set("Content-Type", "application/json")
		r := do(t, req)
		if r.Status != http.StatusRequestEntityTooLarge || r.code(t) != "BAD_USER_INPUT" {
			t.Errorf("chunked %v: %d %s", chunked, r.Status, r.Body)
		}
	}
	// Just under the limit is fine.
	small := `{"query": "{ __typename }", "variables": {"pad": "` + strings.Repeat("x", server.DefaultMaxBodyBytes-100) + `"}}`
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(small))
	req.Header.Set("Content-Type", "application/json")
	if r := do(t, req); r.Status != http.StatusOK || r.Data["__typename"] != "Query" {
		t.Errorf("under the limit: %d %.200s", r.Status, r.Body)
	}
}

func TestDepthLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{DepthLimit: 3, Introspection: true}, server.Deps{})
	cases := []struct {
		name  string
		query string
		ok    bool
	}{
		{"three deep", `{ session(id: "s") { owner { id } } }`, true},
		{"four deep", `{ session(id: "s") { participants { user { id } } } }`, false},
		{"four deep beside shallow", `{ __typename languages { name } session(id: "s") { participants { user { id } } } }`, false},
		{"inline fragments", `{ session(id: "s") { ... on Session { participants { ... on Participant { user { id } } } } } }`, false},
		{"fragments", `{ session(id: "s") { ...S } } fragment S on Session { participants { ...P } } fragment P on Participant { user { id } }`, false},
		{"fragment within", `{ session(id: "s") { ...S } } fragment S on Session { owner { ...U } } fragment U on User { id }`, true},
		{"fragment spread twice", `{ a: session(id: "s") { ...S } b: session(id: "t") { ...S } } fragment S on Session { owner { id } }`, true},
		{"introspection not counted", `{ __schema { types { fields { type { ofType { name } } } } } }`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.post(t, c.query, nil)
			refused := len(r.Errors) > 0 && strings.Contains(r.Errors[0].Message, "levels deep")
			if refused == c.ok {
				t.Fatalf("refused %v, want %v: %d %s", refused, !c.ok, r.Status, r.Body)
			}
			if refused && (r.Status != http.StatusUnprocessableEntity || r.code(t) != "BAD_USER_INPUT") {
				t.Errorf("refusal: %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestComplexityLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{ComplexityLimit: 3}, server.Deps{})
	if r := e.post(t, `{ __typename }`, nil); len(r.Errors) > 0 {
		t.Errorf("simple query refused: %s", r.Body)
	}
	r := e.post(t, `{ session(id: "s") { id title owner { id name } } }`, nil)
	if r.code(t) != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "exceeds the limit of 3") {
		t.Errorf("complex query: %d %s", r.Status, r.Body)
	}
}

// A fragment bomb (each fragment spreading the previous one twice) is
// refused by its expanded size before gqlgen's complexity calculation,
// which walks every expanded field, would take exponential time.
func TestFragmentBombRefusedQuickly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	const levels = 60 // 2^60 fields once expanded
	var b strings.Builder
	fmt.Fprintf(&b, "query { session(id: \"s\") { ...F%d } }\nfragment F0 on Session { id }\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on Session { ...F%d ...F%d }\n", i, i-1, i-1)
	}
	start := time.Now()
	r := e.post(t, b.String(), nil)
	if r.Status != http.StatusUnprocessableEntity || r.code(t) != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "expands to more than") {
		t.Errorf("%d %s", r.Status, r.Body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// GraphiQL's schema query must pass the default limits.
func TestDefaultLimitsAllowGraphiQLIntrospection(t *testing.T) {
	t.Parallel()
	query, err := os.ReadFile("testdata/introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, server.Config{Introspection: true}, server.Deps{})
	r := e.post(t, string(query), nil)
	if r.Status != http.StatusOK || len(r.Errors) > 0 || r.Data["__schema"] == nil {
		t.Errorf("%d %.500s", r.Status, r.Body)
	}
}

func TestIntrospectionSwitch(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		e := newEnv(t, server.Config{Introspection: on}, server.Deps{})
		r := e.post(t, `{ __schema { queryType { name } } }`, nil)
		if on && (len(r.Errors) > 0 || r.Data["__schema"] == nil) {
			t.Errorf("introspection on: %s", r.Body)
		}
		if !on && (r.Data["__schema"] != nil || r.code(t) != "BAD_USER_INPUT" ||
			!strings.Contains(r.Errors[0].Message, "introspection is disabled")) {
			t.Errorf("introspection off: %s", r.Body)
		}
		for _, q := range []string{
			`query { ...Q } fragment Q on Query { __schema { queryType { name } } }`,
			`{ ... on Query { __type(name: "User") { name } } }`,
		} {
			r := e.post(t, q, nil)
			if refused := len(r.Errors) > 0 && strings.Contains(r.Errors[0].Message, "introspection is disabled"); refused == on {
				t.Errorf("introspection %v: %s: %s", on, q, r.Body)
			}
		}
		// __typename is not introspection: it always works.
		if r := e.post(t, `{ __typename }`, nil); r.Data["__typename"] != "Query" {
			t.Errorf("introspection %v: __typename: %s", on, r.Body)
		}
	}
}

func TestSuggestionsSwitch(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		e := newEnv(t, server.Config{Suggestions: on}, server.Deps{})
		r := e.post(t, `{ sesion(id: "s") { id } }`, nil)
		if r.code(t) != "BAD_USER_INPUT" {
			t.Errorf("code %s", r.Body)
		}
		if got := strings.Contains(r.Errors[0].Message, "Did you mean"); got != on {
			t.Errorf("suggestions %v: message %q", on, r.Errors[0].Message)
		}
	}
}
