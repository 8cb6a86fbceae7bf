package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// startReplicas starts two API replicas sharing one Redis prefix, one JWT
// secret and one store: b runs the embedded store, a uses it by MONGO_URI
// (so a can restart while b stays up).
func startReplicas(t *testing.T) (a, b *testApp) {
	t.Helper()
	redisURL := testenv.RedisURL(t)
	prefix := "cmdtest:" + codecrafter.RandomToken(6) + ":"
	b = startApp(t, func(c *config) { c.RedisURL, c.RedisPrefix = redisURL, prefix })
	a = startApp(t, func(c *config) {
		c.RedisURL, c.RedisPrefix = redisURL, prefix
		c.MongoURI, c.MongoDB, c.JWTSecret = b.app.mongoURI, b.cfg.MongoDB, b.cfg.JWTSecret
	})
	return a, b
}

// presenceOf matches a presence event of userID going on (or off).
func presenceOf(t *testing.T, userID string, on bool) func(map[string]json.RawMessage) bool {
	return func(d map[string]json.RawMessage) bool {
		f := field[userFlag](t, d, "presence")
		return f.User.ID == userID && *f.Online == on
	}
}

// TestTwoReplicasBehaveAsOne: two apps in this process on one Redis and
// one store behave as one (replicaJourney); TestTwoServeProcesses takes
// the same journey with real processes.
func TestTwoReplicasBehaveAsOne(t *testing.T) {
	t.Parallel()
	a, b := startReplicas(t)
	replicaJourney(t, a, b, a.stop, func() *testApp {
		again := &testApp{cfg: a.cfg}
		again.start(t)
		return again
	})
}

// TestReplicaKilledGoesOffline kills (SIGKILL) a serve process while a
// user holds a subscription through it: the other replica sees them go
// offline once the dead replica's presence expires.
func TestReplicaKilledGoesOffline(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := startApp(t, func(c *config) {
		c.RedisURL, c.RedisPrefix = testenv.RedisURL(t), "cmdtest:"+codecrafter.RandomToken(6)+":"
	})
	ada, bob := b.register(t, "ada"), b.register(t, "bob")
	s := createSession(t, ada, "doomed replica")
	join(t, bob, *s.InviteCode)
	vars := map[string]any{"s": s.ID}

	proc, url := startServeProcess(t, bin, b, "doomed")
	bobSock := openSocket(t, &testApp{URL: url}, "graphql-transport-ws", bob.Access)
	bobSock.subscribe("runs", sessionExecutionsQ, vars)

	adaSock := openSocket(t, b, "graphql-transport-ws", ada.Access)
	adaSock.subscribe("presence", presenceQ, vars)
	adaSock.await("presence", presenceOf(t, bob.ID, true))

	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The process cannot say goodbye: its hold expires (TTL 2 s here), and
	// a sweep on B announces it.
	if _, err := adaSock.awaitWithin("presence", presenceOf(t, bob.ID, false), 90*time.Second); err != nil {
		t.Fatalf("bob not offline after his replica died: %v", err)
	}
	var got struct{ Session sessionOut }
	ada.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	for _, p := range got.Session.Participants {
		if p.User.ID == bob.ID && p.Online {
			t.Fatalf("bob still online after his replica died: %+v", got.Session.Participants)
		}
	}
}

// startServeProcess runs `codecrafter serve` (no worker, presence TTL 2 s)
// on ta's store, Redis prefix and JWT secret, and returns the process
// (killed at cleanup) and its /graphql URL once it serves.
func startServeProcess(t *testing.T, bin string, ta *testApp, name string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0", "-metrics-addr", "", "-worker", "off",
		"-data-dir", t.TempDir(), "-log-format", "json", "-log-level", "info")
	cmd.Env = append(os.Environ(),
		"MONGO_URI="+ta.app.mongoURI, "CODECRAFTER_MONGO_DB="+ta.cfg.MongoDB,
		"REDIS_URL="+ta.cfg.RedisURL, "CODECRAFTER_REDIS_PREFIX="+ta.cfg.RedisPrefix,
		"CODECRAFTER_JWT_SECRET="+ta.cfg.JWTSecret, "CODECRAFTER_PRESENCE_TTL=2s", "AMQP_URL=",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	logs := newTestLog(t)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintf(logs, "[%s] %s", name, sc.Text())
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				select {
				case addr <- line.Addr:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a + "/graphql"
	case <-exited:
		t.Fatalf("%s exited before serving", name)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not serving within 60s", name)
	}
	return nil, ""
}
