package server_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter/server"
)

// The page and every file it references come from the binary, with the
// right content types: nothing is fetched from elsewhere.
func TestGraphiQLServedOffline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{GraphiQL: true, Introspection: true}, server.Deps{})
	page := do(t, mustRequest(t, http.MethodGet, e.URL+"/graphiql"))
	if page.Status != http.StatusOK || page.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("page: %d %v", page.Status, page.Header)
	}
	csp := page.Header.Get("Content-Security-Policy")
	host := strings.TrimPrefix(e.URL, "http://")
	for _, want := range []string{"script-src 'self';", "connect-src 'self' ws://" + host + " wss://" + host, "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("page CSP %q allows eval or inline scripts", csp)
	}

	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(string(page.Body), -1)
	wantTypes := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	checked := 0
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") {
			continue
		}
		u, err := url.Parse(ref)
		if err != nil || u.IsAbs() || strings.HasPrefix(ref, "//") {
			t.Errorf("page references %q: not served by the binary", ref)
			continue
		}
		req := mustRequest(t, http.MethodGet, e.URL+"/"+ref)
		req.Header.Set("Accept-Encoding", "identity") // gzip is tested below; it is slow under -race
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ext := ref[strings.LastIndex(ref, "."):]
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantTypes[ext] || len(body) == 0 {
			t.Errorf("%s: %d %q, %d bytes", ref, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		checked++
	}
	if checked < 6 { // 2 styles, 4 scripts
		t.Errorf("only %d assets referenced: %s", checked, page.Body)
	}
}

func TestGraphiQLAssetCaching(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{GraphiQL: true}, server.Deps{})
	const asset = "/assets/vendor/react-dom.production.min.js"
	resp, err := http.Get(e.URL + asset) // the client asks for gzip and inflates
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if !resp.Uncompressed || n < 100<<10 || etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("gzipped %v, %d bytes, ETag %q, Cache-Control %q", resp.Uncompressed, n, etag, resp.Header.Get("Cache-Control"))
	}

	req := mustRequest(t, http.MethodGet, e.URL+asset)
	req.Header.Set("If-None-Match", etag)
	if r := do(t, req); r.Status != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", r.Status)
	}
	for _, p := range []string{"/assets/", "/assets/vendor/", "/assets/nope.js", "/assets/vendor.sh"} {
		if r := do(t, mustRequest(t, http.MethodGet, e.URL+p)); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.Status)
		}
	}
	if r := do(t, mustRequest(t, http.MethodGet, e.URL+"/assets/vendor/licenses/graphiql.LICENSE")); r.Status != http.StatusOK {
		t.Errorf("license: %d", r.Status)
	}
}

func TestGraphiQLOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	for _, p := range []string{"/graphiql", "/assets/graphiql.js"} {
		if r := do(t, mustRequest(t, http.MethodGet, e.URL+p)); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.Status)
		}
	}
}
