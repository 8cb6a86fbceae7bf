// Package testenv finds the real services integration tests talk to. A
// missing service skips the test, except with CI=true, where it fails:
// `make test` (and so CI) starts every service first.
package testenv

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Defaults match what scripts/services.sh starts.
const (
	DefaultRedisURL = "redis://127.0.0.1:6379/0"
	DefaultAMQPURL  = "amqp://guest:guest@127.0.0.1:5672/"
)

// CI reports whether missing services must fail tests.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test under CI and skips it otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true and a service is missing: "+format, args...)
	}
	t.Skipf("service missing (run `make test` to start it): "+format, args...)
}

// RedisURL returns the URL of a reachable Redis (TEST_REDIS_URL, else the
// default). Tests sharing it must namespace their keys.
func RedisURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "TEST_REDIS_URL", DefaultRedisURL)
}

// AMQPURL returns the URL of a reachable RabbitMQ (TEST_AMQP_URL, else the
// default). Tests sharing it must use their own queue names.
func AMQPURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "TEST_AMQP_URL", DefaultAMQPURL)
}

// Docker checks that a Docker engine answers (DOCKER_HOST or the default
// socket) by running `docker info`.
func Docker(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		Missing(t, "docker engine: %v: %s", err, out)
	}
}

func reachable(t testing.TB, env, def string) string {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		Missing(t, "%s at %s: %v", env, u.Host, err)
		return ""
	}
	conn.Close()
	return raw
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
