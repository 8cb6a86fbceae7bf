package server_test

import (
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/codecrafter/codecrafter/server"
)

var builtApp = fstest.MapFS{
	"index.html":          {Data: []byte(`<!doctype html><script type="module" src="/app/index-abc123.js"></script>`)},
	"app/index-abc123.js": {Data: []byte("console.log('app')")},
	"app/sub/x.css":       {Data: []byte("body{}")},
}

// The client's pages all get index.html (its router reads the path), with
// a CSP that runs only the client's own scripts and lets it reach this
// host's WebSocket; its hashed files are cached for good; other paths and
// directories are 404s. GraphiQL lives at /graphiql beside it.
func TestWebAppServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{GraphiQL: true}, server.Deps{WebApp: builtApp})
	host := strings.TrimPrefix(e.URL, "http://")
	for _, p := range []string{"/", "/signin", "/signup", "/s/abc", "/join/code1"} {
		r := do(t, mustRequest(t, http.MethodGet, e.URL+p))
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "/app/index-abc123.js") ||
			r.Header.Get("Content-Type") != "text/html; charset=utf-8" || r.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: %d %v %q", p, r.Status, r.Header, r.Body)
			continue
		}
		csp := r.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none';", "script-src 'self';", "connect-src 'self' ws://" + host + " wss://" + host, "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("%s: CSP %q allows eval or inline scripts", p, csp)
		}
	}
	r := do(t, mustRequest(t, http.MethodGet, e.URL+"/app/index-abc123.js"))
	if r.Status != http.StatusOK || string(r.Body) != "console.log('app')" ||
		r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" ||
		r.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("asset: %d %v %q", r.Status, r.Header, r.Body)
	}
	for _, p := range []string{"/app/", "/app/sub/", "/app/nope.js", "/nope", "/s/a/b", "/index.html"} {
		if r := do(t, mustRequest(t, http.MethodGet, e.URL+p)); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.Status)
		}
	}
	if r := do(t, mustRequest(t, http.MethodGet, e.URL+"/graphiql")); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "GraphiQL") {
		t.Errorf("/graphiql: %d", r.Status)
	}
}

// A binary built without npm says how to build the client.
func TestWebAppNotBuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{WebApp: fstest.MapFS{"README.md": {Data: []byte("placeholder")}}})
	r := do(t, mustRequest(t, http.MethodGet, e.URL+"/s/abc"))
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "make build") {
		t.Errorf("%d %q", r.Status, r.Body)
	}
}
