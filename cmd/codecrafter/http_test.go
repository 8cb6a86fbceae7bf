package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
)

func TestGraphiQLDefaultsOffInProduction(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want bool
	}{
		{nil, "", true},
		{[]string{"-env", "production"}, "", false},
		{[]string{"-env", "production", "-graphiql"}, "", true},
		{[]string{"-env", "production", "-graphiql=true"}, "", true},
		{[]string{"-env", "production"}, "true", true},
		{[]string{"-graphiql=false"}, "", false},
		{nil, "false", false},
	} {
		t.Run(fmt.Sprint(c.args, c.env), func(t *testing.T) {
			if c.env != "" {
				t.Setenv("CODECRAFTER_GRAPHIQL", c.env)
			}
			var cfg config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			cfg.bind(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if got := cfg.graphiql(); got != c.want {
				t.Errorf("graphiql() = %v, want %v", got, c.want)
			}
		})
	}
	t.Setenv("CODECRAFTER_GRAPHIQL", "sometimes")
	cfg := testConfig(t)
	if err := cfg.validate("serve"); err == nil || !strings.Contains(err.Error(), "CODECRAFTER_GRAPHIQL") {
		t.Errorf("bad $CODECRAFTER_GRAPHIQL: %v", err)
	}
}

func TestTrustedProxiesConfig(t *testing.T) {
	cfg := testConfig(t)
	if cfg.trustedProxies() != 0 {
		t.Errorf("default %d proxies", cfg.trustedProxies())
	}
	cfg.TrustProxy = true
	if cfg.trustedProxies() != 1 {
		t.Errorf("-trust-proxy: %d proxies", cfg.trustedProxies())
	}
	cfg.TrustedProxies = 2
	if cfg.trustedProxies() != 2 {
		t.Errorf("-trust-proxy -trusted-proxies 2: %d proxies", cfg.trustedProxies())
	}
	cfg.TrustedProxies = -1
	if err := cfg.validate("serve"); err == nil {
		t.Error("-trusted-proxies -1 accepted")
	}
}

// addrLog records the addr of the "serving" and "metrics" log lines.
type addrLog struct{ addrs chan [2]string }

func (h addrLog) Enabled(context.Context, slog.Level) bool { return true }
func (h addrLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h addrLog) WithGroup(string) slog.Handler            { return h }
func (h addrLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "serving" || r.Message == "metrics" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.addrs <- [2]string{r.Message, a.Value.String()}
			}
			return true
		})
	}
	return nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve answers /metrics on -metrics-addr only, never on the API port.
func TestServeMetricsOnTheirOwnListener(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Addr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	h := addrLog{addrs: make(chan [2]string, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(h)) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	urls := map[string]string{}
	for len(urls) < 2 {
		select {
		case a := <-h.addrs:
			urls[a[0]] = a[1]
		case err := <-done:
			t.Fatalf("serve: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatalf("serve did not log both listeners: %v", urls)
		}
	}
	api, metrics := urls["serving"], urls["metrics"]
	(&gqltest.Client{URL: api + "/graphql"}).Do(t, `{ __typename }`, nil, nil)

	if code, _ := get(t, api+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the API port: %d", code)
	}
	if code, _ := get(t, api+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz on the API port: %d", code)
	}
	code, body := get(t, metrics+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `codecrafter_http_requests_total{method="POST",route="/graphql",status="200"} 1`) {
		t.Errorf("/metrics on the metrics port: %d %.1000s", code, body)
	}
	if code, _ := get(t, metrics+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz on the metrics port: %d", code)
	}
}

// forwarded sends X-Forwarded-For as a client behind one proxy would: the
// client's own (spoofed) hops, then the address the proxy saw.
type forwarded string

func (f forwarded) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", string(f))
	return http.DefaultTransport.RoundTrip(r)
}

// Behind one trusted proxy, the login limiter keys on the hop the proxy
// appended: made-up hops to its left do not give a fresh allowance.
func TestLoginLimitIgnoresSpoofedHops(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.TrustedProxies, c.LoginMaxPerAddr, c.LoginMaxPerAccount = 1, 3, 100 })
	from := func(xff string) *gqltest.Client {
		return &gqltest.Client{URL: ta.URL, HTTP: &http.Client{Transport: forwarded(xff)}}
	}
	login := func(i int) map[string]any {
		return map[string]any{"in": map[string]any{"email": fmt.Sprintf("nobody%d@example.com", i), "password": "not the password"}}
	}
	for i := range 3 {
		from(fmt.Sprintf("10.66.0.%d, 203.0.113.7", i)).Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, login(i))
	}
	from("10.66.0.99, 198.18.0.1, 203.0.113.7").Fail(t, codecrafter.ERATELIMITED, loginQ, login(99))
	from("203.0.113.7").Fail(t, codecrafter.ERATELIMITED, loginQ, login(100))
	// Another address behind the same proxy is not limited.
	from("10.66.0.1, 203.0.113.8").Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, login(101))
}

// postRaw runs an operation and returns the raw body.
func postRaw(t *testing.T, url, token, query string, vars map[string]any) []byte {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The README's 1 MiB of stdin can be sent, even when JSON escapes every
// byte as \u00XX (6 MiB of body); more is BAD_USER_INPUT from the
// service, not a 413.
func TestExecuteAcceptsTheDocumentedStdin(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	u := ta.register(t, "stdin")
	in := func(stdin string) map[string]any {
		return map[string]any{"in": map[string]any{"language": "python", "code": "print(1)", "stdin": stdin}}
	}
	var out struct{ Execute struct{ ID, Status string } }
	u.Do(t, executeQ, in(strings.Repeat("\x01", codecrafter.MaxStdinLen)), &out)
	if out.Execute.Status != "QUEUED" {
		t.Errorf("status %s", out.Execute.Status)
	}
	e := u.Fail(t, codecrafter.EINVALID, executeQ, in(strings.Repeat("x", codecrafter.MaxStdinLen+1)))
	if !strings.Contains(e.Message, "stdin") {
		t.Errorf("message %q", e.Message)
	}
}

// The tester's attack: a small query of many aliases of a run with 1 MiB
// of stdin. It is refused before running, and a response over the size
// limit is replaced by one error; fewer aliases still work.
func TestManyAliasesOfALargeRun(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	u := ta.register(t, "aliases")
	var out struct{ Execute struct{ ID string } }
	u.Do(t, executeQ, map[string]any{"in": map[string]any{"language": "python", "code": "print(1)", "stdin": strings.Repeat("x", codecrafter.MaxStdinLen)}}, &out)
	query := func(n int) string {
		var b strings.Builder
		b.WriteString("query($id: ID!) {")
		for i := range n {
			fmt.Fprintf(&b, " a%d: execution(id: $id) { stdin }", i)
		}
		return b.String() + " }"
	}
	vars := map[string]any{"id": out.Execute.ID}
	for _, c := range []struct {
		aliases int
		inMsg   string
	}{
		{300, "aliases"},
		{9, "larger than the limit of 8 MiB"}, // 9 MiB of stdin
	} {
		body := postRaw(t, ta.URL, u.Access, query(c.aliases), vars)
		var r gqltest.Response
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("%d aliases: %v: %.300s", c.aliases, err, body)
		}
		if r.Code() != codecrafter.EINVALID || !strings.Contains(r.Errors[0].Message, c.inMsg) || len(body) > 4096 {
			t.Errorf("%d aliases: %d bytes: %.300s", c.aliases, len(body), body)
		}
	}
	var five map[string]struct{ Stdin string }
	u.Do(t, query(5), vars, &five)
	if len(five) != 5 || len(five["a4"].Stdin) != codecrafter.MaxStdinLen {
		t.Errorf("5 aliases: %d answers", len(five))
	}
}

// TestBrowseURL: the address `serve` says to open in a browser.
func TestBrowseURL(t *testing.T) {
	for addr, want := range map[string]string{
		"[::]:8080":      "http://localhost:8080/",
		"0.0.0.0:8080":   "http://localhost:8080/",
		"127.0.0.1:9000": "http://127.0.0.1:9000/",
		"[::1]:8080":     "http://[::1]:8080/",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := browseURL(a); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}
