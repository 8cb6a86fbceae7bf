package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// process is a codecrafter command run by a test; it is killed at cleanup.
type process struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProcess runs bin with args and env, forwards its JSON log to the
// test log, and returns once it logs a line whose msg is ready, with that
// line.
func startProcess(t *testing.T, bin, name, ready string, env []string, args ...string) (*process, map[string]any) {
	t.Helper()
	pr, pw := io.Pipe()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = pw // not StderrPipe: Wait then waits for the last lines
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); pw.Close(); close(p.exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.exited })
	logs := newTestLog(t)
	lines := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fmt.Fprintf(logs, "[%s] %s", name, sc.Text())
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == ready {
				select {
				case lines <- line:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr) // a line too long for the scanner must not block the process
	}()
	select {
	case line := <-lines:
		return p, line
	case <-p.exited:
		t.Fatalf("%s exited before logging %q", name, ready)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not log %q within 60s", name, ready)
	}
	return nil, nil
}

// stop sends SIGTERM and waits until the process has exited.
func (p *process) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// startServe runs `codecrafter serve` on addr with env and waits until
// its /readyz answers 200.
func startServe(t *testing.T, bin, name, addr string, env []string) (*process, *testApp) {
	t.Helper()
	p, _ := startProcess(t, bin, name, "serving", env, "serve", "-addr", addr, "-metrics-addr", "",
		"-worker", "off", "-data-dir", t.TempDir(), "-log-format", "json", "-log-level", "info")
	base := "http://" + addr
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s: %v", name, err)
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before it was ready", name)
		case <-time.After(100 * time.Millisecond): // polling start-up
		}
	}
	return p, &testApp{URL: base + "/graphql"}
}

// mustFreeAddr is freeAddr (bench_fanout.go) for a test: a replica can
// then restart on the address it had.
func mustFreeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestTwoServeProcesses is TestTwoReplicasBehaveAsOne with real processes:
// `codecrafter store` and two `serve` replicas sharing it, Redis and the
// JWT secret. Users subscribe on A and act on B: chat, typing, presence
// (first list, changes, Participant.online) and sessionExecutions arrive;
// A restarts on its address and messageAdded(after:) resumes with exactly
// the missed messages, then a live one; three clients edit one session
// at once through both (editTogether); B killed with -9 takes its user
// offline on A.
func TestTwoServeProcesses(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, line := startProcess(t, bin, "store", "store serving", nil,
		"store", "-addr", "127.0.0.1:0", "-data-dir", t.TempDir(), "-log-level", "info")
	mongoURI, _ := line["uri"].(string)
	if mongoURI == "" {
		t.Fatalf("store logged no uri: %v", line)
	}
	env := []string{
		"MONGO_URI=" + mongoURI, "CODECRAFTER_MONGO_DB=cmdtest",
		"REDIS_URL=" + redisURL, "CODECRAFTER_REDIS_PREFIX=cmdtest:" + codecrafter.RandomToken(6) + ":",
		"CODECRAFTER_JWT_SECRET=" + codecrafter.RandomToken(32), "AMQP_URL=", "CODECRAFTER_WORKER=off",
		"CODECRAFTER_ARGON2_MEMORY_KIB=1024", "CODECRAFTER_ARGON2_PASSES=1", "CODECRAFTER_REGISTER_MAX_PER_ADDR=1000",
	}
	addrA := mustFreeAddr(t)
	procA, a := startServe(t, bin, "A", addrA, env)
	// B is the one killed: a short presence TTL (3 s, heartbeat 0.75 s) so
	// its holds expire soon; A keeps the default, which a loaded machine's
	// pauses cannot outlast.
	procB, b := startServe(t, bin, "B", mustFreeAddr(t), append(env, "CODECRAFTER_PRESENCE_TTL=3s"))

	s, bob := replicaJourney(t, a, b, procA.stop, func() *testApp {
		_, a := startServe(t, bin, "A again", addrA, env)
		return a
	})
	vars := map[string]any{"s": s.ID}
	editTogether(t, a, b) // A again, on its address

	// frank holds a subscription on B only; B dies with -9 and cannot say
	// goodbye: his hold expires and A's sweep takes him offline.
	frank := b.register(t, "frank")
	join(t, frank, *s.InviteCode)
	bobSock := openSocket(t, a, "graphql-transport-ws", bob.Access) // A on its address again
	bobSock.subscribe("presence", presenceQ, vars)
	bobSock.await("presence", presenceOf(t, bob.ID, true))
	frankSock := openSocket(t, b, "graphql-ws", frank.Access)
	frankSock.subscribe("runs", sessionExecutionsQ, vars)
	bobSock.await("presence", presenceOf(t, frank.ID, true))
	if err := procB.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := bobSock.awaitWithin("presence", presenceOf(t, frank.ID, false), 90*time.Second); err != nil {
		t.Fatalf("frank not offline on A after B died: %v", err)
	}
	var got struct{ Session sessionOut }
	bob.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	for _, p := range got.Session.Participants {
		if p.User.ID == frank.ID && p.Online {
			t.Fatalf("on A, frank still online after B died: %+v", got.Session.Participants)
		}
	}
}

// replicaJourney subscribes on replica A and acts on replica B: chat,
// typing, presence (first list and changes, Participant.online) and
// sessionExecutions all arrive; then A stops (stopA), B takes messages, A
// starts again (startA) and messageAdded(after:) resumes with nothing
// missed, then goes live. Each watcher on A is a user of its own whose
// coming online proves their subscription live (a subscription holds
// presence only once it is subscribed to the bus), so nothing is sent
// before anyone listens. It returns the session and its watcher bob, a
// client of A.
func replicaJourney(t *testing.T, a, b *testApp, stopA func(), startA func() *testApp) (sessionOut, *user) {
	t.Helper()
	ada := b.register(t, "ada")
	s := createSession(t, ada, "two replicas")
	vars := map[string]any{"s": s.ID}
	watcher := func(name string) *user {
		u := b.register(t, name)
		join(t, u, *s.InviteCode)
		u.Client = a.client().With(u.Access) // watchers talk to A only
		return u
	}
	bob := watcher("bob")
	bobSock := openSocket(t, a, "graphql-transport-ws", bob.Access)
	bobSock.subscribe("presence", presenceQ, vars)
	bobSock.await("presence", presenceOf(t, bob.ID, true))
	// listen opens a watcher's legacy graphql-ws subscription on A; their
	// coming online proves it live.
	listen := func(name, op, query string) (*user, *rawSocket) {
		u := watcher(name)
		sock := openSocket(t, a, "graphql-ws", u.Access)
		sock.subscribe(op, query, vars)
		bobSock.await("presence", presenceOf(t, u.ID, true))
		return u, sock
	}
	carol, chat := listen("carol", "chat", messageAddedQ)
	_, typing := listen("dave", "typing", typingQ)
	_, runs := listen("erin", "runs", sessionExecutionsQ)

	adaSock := openSocket(t, b, "graphql-transport-ws", ada.Access)
	adaSock.subscribe("chat", messageAddedQ, vars)
	bobSock.await("presence", presenceOf(t, ada.ID, true)) // held on B, seen on A
	bobSock.subscribe("presence2", presenceQ, vars)
	bobSock.await("presence2", presenceOf(t, ada.ID, true)) // A's first list
	var got struct{ Session sessionOut }
	bob.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if len(got.Session.Participants) != 5 {
		t.Fatalf("on A, participants %+v, want 5", got.Session.Participants)
	}
	for _, p := range got.Session.Participants {
		if !p.Online {
			t.Fatalf("on A, participant %s is not online: %+v", p.User.ID, got.Session.Participants)
		}
	}

	ada.Do(t, `mutation($s: ID!) { setTyping(sessionId: $s, typing: true) }`, vars, nil)
	typing.await("typing", func(d map[string]json.RawMessage) bool {
		f := field[userFlag](t, d, "typing")
		return f.User.ID == ada.ID && *f.Typing
	})
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "first"}, nil)
	first := field[chatEvent](t, chat.await("chat", func(map[string]json.RawMessage) bool { return true }), "messageAdded")
	if first.Body != "first" || first.Author.ID != ada.ID {
		t.Fatalf("carol got %+v", first)
	}
	run := execute(t, ada.Client, map[string]any{"language": "python", "code": "print(1)", "sessionId": s.ID})
	runs.await("runs", func(d map[string]json.RawMessage) bool {
		e := field[struct{ ID, Status string }](t, d, "sessionExecutions")
		return e.ID == run.ID && e.Status == "QUEUED"
	})
	adaSock.conn.Close()
	bobSock.await("presence", presenceOf(t, ada.ID, false))

	// A stops (SIGTERM); B takes messages; A starts again on its address
	// and carol resumes after "first".
	for _, sock := range []*rawSocket{bobSock, chat, typing, runs} {
		sock.conn.Close()
	}
	stopA()
	for i := range 3 {
		ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": fmt.Sprint("m", i)}, nil)
	}
	a = startA()
	chat = openSocket(t, a, "graphql-transport-ws", carol.Access)
	chat.subscribe("resume", messageAddedQ, map[string]any{"s": s.ID, "a": first.ID})
	next := func() chatEvent {
		return field[chatEvent](t, chat.await("resume", func(map[string]json.RawMessage) bool { return true }), "messageAdded")
	}
	for _, w := range []string{"m0", "m1", "m2"} {
		if m := next(); m.Body != w {
			t.Fatalf("resumed on the restarted A: got %q, want %q", m.Body, w)
		}
	}
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "live"}, nil) // sent after the replay
	if m := next(); m.Body != "live" {
		t.Fatalf("after the replay on the restarted A: got %q, want \"live\"", m.Body)
	}

	return s, bob
}
