package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter/server"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	r := do(t, mustRequest(t, http.MethodGet, e.URL+"/healthz"))
	if r.Status != http.StatusOK || string(r.Body) != "ok\n" {
		t.Errorf("%d %q", r.Status, r.Body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("dial tcp 10.0.0.7:6379: connection refused") }
	hanging := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	cases := []struct {
		name   string
		checks map[string]func(context.Context) error
		status int
		body   string
	}{
		{"no checks", nil, http.StatusOK, `{"status":"ok","checks":{}}`},
		{"all pass", map[string]func(context.Context) error{"store": ok, "bus": ok},
			http.StatusOK, `{"status":"ok","checks":{"bus":"ok","store":"ok"}}`},
		{"one fails", map[string]func(context.Context) error{"store": ok, "bus": failing},
			http.StatusServiceUnavailable, `{"status":"unavailable","checks":{"bus":"failed","store":"ok"}}`},
		{"one hangs", map[string]func(context.Context) error{"queue": hanging, "store": ok},
			http.StatusServiceUnavailable, `{"status":"unavailable","checks":{"queue":"timeout","store":"ok"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, server.Config{ReadyTimeout: 50 * time.Millisecond}, server.Deps{Ready: c.checks})
			r := do(t, mustRequest(t, http.MethodGet, e.URL+"/readyz"))
			if r.Status != c.status || !jsonEqual(t, r.Body, c.body) {
				t.Errorf("%d %s, want %d %s", r.Status, r.Body, c.status, c.body)
			}
			if r.Status != http.StatusOK && len(e.logs.lines("readiness check failed")) == 0 {
				t.Error("the failure was not logged")
			}
		})
	}
}

func TestReadyzAfterShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	e.srv.Shutdown()
	r := do(t, mustRequest(t, http.MethodGet, e.URL+"/readyz"))
	if r.Status != http.StatusServiceUnavailable || !jsonEqual(t, r.Body, `{"status":"shutting down","checks":{}}`) {
		t.Errorf("%d %s", r.Status, r.Body)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
