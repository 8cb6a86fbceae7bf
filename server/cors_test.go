package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter/server"
)

const allowedOrigin = "https://app.example.com"

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{AllowedOrigins: []string{allowedOrigin + "/", "http://localhost:5173"}}, server.Deps{})

	t.Run("allowed origin", func(t *testing.T) {
		r := e.post(t, `{ __typename }`, nil, "Origin", allowedOrigin)
		if r.Status != http.StatusOK || r.Data["__typename"] != "Query" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		h := r.Header
		if h.Get("Access-Control-Allow-Origin") != allowedOrigin || h.Get("Access-Control-Allow-Credentials") != "true" ||
			!strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Request-ID") || !strings.Contains(h.Get("Vary"), "Origin") {
			t.Errorf("CORS headers %v", h)
		}
	})

	t.Run("denied origin", func(t *testing.T) {
		r := e.post(t, `{ __typename }`, nil, "Origin", "https://evil.example")
		if r.Status != http.StatusForbidden || r.code(t) != "FORBIDDEN" {
			t.Errorf("%d %s", r.Status, r.Body)
		}
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q for a denied origin", got)
		}
	})

	t.Run("same origin needs no listing", func(t *testing.T) {
		r := e.post(t, `{ __typename }`, nil, "Origin", e.URL)
		if r.Status != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%d %v", r.Status, r.Header)
		}
	})

	for _, c := range []struct {
		origin string
		status int
	}{{allowedOrigin, http.StatusNoContent}, {"http://localhost:5173", http.StatusNoContent}, {"https://evil.example", http.StatusForbidden}, {"null", http.StatusForbidden}} {
		t.Run("preflight from "+c.origin, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodOptions, e.URL+"/graphql", nil)
			req.Header.Set("Origin", c.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			r := do(t, req)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d", r.Status, c.status)
			}
			h := r.Header
			if c.status != http.StatusNoContent {
				if h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Methods") != "" {
					t.Errorf("preflight refused but CORS headers set: %v", h)
				}
				return
			}
			if h.Get("Access-Control-Allow-Origin") != c.origin || h.Get("Access-Control-Allow-Credentials") != "true" ||
				!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Max-Age") == "" {
				t.Errorf("preflight headers %v", h)
			}
			for _, want := range []string{"Authorization", "Content-Type", "X-Request-ID"} {
				if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), want)
				}
			}
		})
	}
}

func TestAllowedOriginsAreValidated(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"*", "https://*.example.com", "example.com", "ftp://example.com", "https://example.com/app", "https://"} {
		_, err := server.New(server.Config{AllowedOrigins: []string{bad}}, server.Deps{Schema: newEnvSchema()})
		if err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{GraphiQL: true}, server.Deps{})
	for _, path := range []string{"/graphql?query=%7B__typename%7D", "/healthz", "/readyz", "/metrics", "/nope", "/", "/graphiql", "/s/x", "/app/x.js", "/assets/graphiql.js"} {
		resp, err := http.Get(e.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: %v", path, h)
		}
		if !strings.HasPrefix(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: CSP %q", path, h.Get("Content-Security-Policy"))
		}
	}
}
