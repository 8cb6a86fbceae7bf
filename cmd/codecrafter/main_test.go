package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter"
)

func TestCommandLine(t *testing.T) {
	ctx := context.Background()
	var out, errs bytes.Buffer
	if err := run(ctx, []string{"--help"}, &out, &errs); err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"serve", "worker", "images build", "store", "MONGO_URI", "REDIS_URL", "AMQP_URL", "CODECRAFTER_ADDR", "CODECRAFTER_JWT_SECRET"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	if err := run(ctx, nil, &out, &errs); err == nil {
		t.Error("no command: want an error")
	}
	if err := run(ctx, []string{"frobnicate"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("unknown command: %v", err)
	}
	if err := run(ctx, []string{"serve", "-env", "production"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "jwt-secret") {
		t.Errorf("production without a secret: %v", err)
	}
	if err := run(ctx, []string{"worker"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "MONGO_URI") {
		t.Errorf("worker without services: %v", err)
	}
	if err := run(ctx, []string{"images", "list"}, &out, &errs); err != nil || !strings.Contains(out.String(), "python") {
		t.Errorf("images list: %v\n%s", err, out.String())
	}
	if err := run(ctx, []string{"health", "-url", "http://127.0.0.1:1/readyz"}, &out, &errs); err == nil {
		t.Error("health of nothing: want an error")
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("CODECRAFTER_WORKER_CONCURRENCY", "7")
	t.Setenv("CODECRAFTER_TIME_LIMIT", "3s")
	cfg := testConfig(t)
	if cfg.WorkerConcurrency != 7 || cfg.DefaultTimeLimit.Seconds() != 3 {
		t.Errorf("env not applied: %d %v", cfg.WorkerConcurrency, cfg.DefaultTimeLimit)
	}
	cfg.Pool = "python=2, go = 1"
	if p, err := cfg.pools(); err != nil || p["python"] != 2 || p["go"] != 1 {
		t.Errorf("pools = %v, %v", p, err)
	}
	for _, bad := range []string{"python", "python=-1", "python=x"} {
		cfg.Pool = bad
		if err := cfg.validate("serve"); err == nil {
			t.Errorf("-pool %q accepted", bad)
		}
	}
	cfg.Pool = ""
	if cfg.GCPercent != 100 {
		t.Errorf("-gc-percent default %d, want 100 (Go's)", cfg.GCPercent)
	}
	cfg.GCPercent = 5
	if err := cfg.validate("serve"); err == nil {
		t.Error("-gc-percent 5 accepted")
	}
	t.Setenv("CODECRAFTER_WORKER_CONCURRENCY", "many")
	cfg = testConfig(t)
	if err := cfg.validate("serve"); err == nil || !strings.Contains(err.Error(), "CODECRAFTER_WORKER_CONCURRENCY") {
		t.Errorf("unparsable env: %v", err)
	}
}

func TestLogsCarryRequestID(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	ctx := codecrafter.WithUserID(codecrafter.WithRequestID(context.Background(), "req-1"), "user-1")
	log.InfoContext(ctx, "hello", "request_id", "req-1")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line["request_id"] != "req-1" || line["user_id"] != "user-1" || strings.Count(buf.String(), "request_id") != 1 {
		t.Errorf("log line %s", buf.String())
	}
	if _, err := newLogger("loud", "json", &buf); err == nil {
		t.Error("bad level accepted")
	}
}
