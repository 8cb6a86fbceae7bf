package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
	"github.com/codecrafter/codecrafter/sandbox"
)

// testApp is the whole server (real handler, resolvers, services and the
// embedded FerretDB store) on a loopback port.
type testApp struct {
	URL    string // the /graphql endpoint
	cfg    config
	app    *app
	stopFn func()
}

// stop shuts the app down now (it also stops when the test ends).
func (ta *testApp) stop() { ta.stopFn() }

// testConfig returns the defaults with a private data dir, no worker and
// cheap password hashing.
func testConfig(t testing.TB) config {
	t.Helper()
	var cfg config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.bind(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Worker = "off"
	cfg.Argon2MemoryKB, cfg.Argon2Passes = 1024, 1
	cfg.RegisterMaxPerAddr = 1000 // tests register many users from one address
	cfg.JWTSecret = codecrafter.RandomToken(32)
	cfg.MongoURI, cfg.RedisURL, cfg.AMQPURL = "", "", ""
	return cfg
}

// startApp serves an app built from testConfig as changed by opts, until
// the test ends.
func startApp(t testing.TB, opts ...func(*config)) *testApp {
	t.Helper()
	cfg := testConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	ta := &testApp{cfg: cfg}
	ta.start(t)
	return ta
}

func (ta *testApp) start(t testing.TB) {
	t.Helper()
	if err := ta.cfg.validate("serve"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, ta.cfg, log, true, ta.cfg.runWorker())
	if err != nil {
		cancel()
		t.Fatalf("newApp: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	ta.app = a
	ta.URL = "http://" + ln.Addr().String() + "/graphql"
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("serve did not stop within 30s")
			}
			a.close()
			if ta.cfg.runWorker() {
				assertNoContainers(t, ta.cfg.SandboxInstance)
			}
		})
	}
	t.Cleanup(stop)
	ta.stopFn = stop
}

// client returns an anonymous client.
func (ta *testApp) client() *gqltest.Client { return &gqltest.Client{URL: ta.URL} }

// testLog forwards log lines to t.Log while the test runs.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(string(p))
	}
	return len(p), nil
}

// user is a registered account with its tokens.
type user struct {
	ID, Email, Name, Password string
	Access, Refresh           string
	*gqltest.Client
}

const registerQ = `mutation($in: RegisterInput!) { register(input: $in) { accessToken refreshToken expiresAt user { id name email } } }`

type authPayload struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	User         struct {
		ID, Name string
		Email    *string
	}
}

var userSeq struct {
	sync.Mutex
	n int
}

// register creates a fresh account.
func (ta *testApp) register(t testing.TB, name string) *user {
	t.Helper()
	userSeq.Lock()
	userSeq.n++
	n := userSeq.n
	userSeq.Unlock()
	u := &user{Email: fmt.Sprintf("%s.%d@example.com", name, n), Name: name, Password: "correct horse battery"}
	var out struct{ Register authPayload }
	ta.client().Do(t, registerQ, map[string]any{"in": map[string]any{"email": u.Email, "password": u.Password, "name": name}}, &out)
	u.ID, u.Access, u.Refresh = out.Register.User.ID, out.Register.AccessToken, out.Register.RefreshToken
	u.Client = ta.client().With(u.Access)
	return u
}

// assertNoContainers fails when a sandbox container of the instance is
// left on the engine after the app closed.
func assertNoContainers(t testing.TB, instance string) {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--format", "{{.ID}}:{{.State}}:{{.Status}}", "--filter", "label="+sandbox.LabelInstance+"="+instance).Output()
	if err != nil {
		t.Errorf("docker ps: %v", err)
		return
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		t.Errorf("sandbox containers left after the app closed: %v", ids)
	}
}
