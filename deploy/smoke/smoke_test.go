//go:build stack

package smoke_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	base       = env("SMOKE_URL", "http://127.0.0.1:18080")        // the balancer
	prometheus = env("SMOKE_PROMETHEUS", "http://127.0.0.1:19090") // its UI/API
	project    = env("SMOKE_PROJECT", "ccsmoke")                   // compose project, for docker kill/stop
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// journey prints each step with the time since the start and its own
// duration, so a failure says where and a slow step shows.
type journey struct {
	t     *testing.T
	start time.Time
}

func (j *journey) step(name string, timeout time.Duration, f func(ctx context.Context) error) {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	began := time.Now()
	fmt.Printf("[%6.1fs] %s ...\n", began.Sub(j.start).Seconds(), name)
	if err := f(ctx); err != nil {
		fmt.Printf("[%6.1fs] FAILED %s after %.1fs: %v\n", time.Since(j.start).Seconds(), name, time.Since(began).Seconds(), err)
		j.t.Fatalf("step %q: %v", name, err)
	}
	fmt.Printf("[%6.1fs]   ok (%.1fs)\n", time.Since(j.start).Seconds(), time.Since(began).Seconds())
}

func logf(format string, args ...any) { fmt.Printf("           "+format+"\n", args...) }

// docker runs the docker CLI.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// containers lists the project's containers of a service ("" for all):
// names, in order.
func containers(ctx context.Context, service string) ([]string, error) {
	args := []string{"ps", "-a", "--filter", "label=com.docker.compose.project=" + project, "--format", "{{.Names}}"}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := docker(ctx, args...)
	if err != nil || out == "" {
		return nil, err
	}
	names := strings.Split(out, "\n")
	slices.Sort(names)
	return names, nil
}

// poll calls f until it returns nil or ctx ends; the last error says why.
func poll(ctx context.Context, every time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

type user struct {
	ID, Name, Token string
}

type message struct {
	ID     string `json:"id"`
	Body   string `json:"body"`
	Author struct {
		ID string `json:"id"`
	} `json:"author"`
}

type output struct {
	Seq    int     `json:"seq"`
	Stream *string `json:"stream"`
	Data   *string `json:"data"`
	Status string  `json:"status"`
}

const (
	messageSub = `subscription($s: ID!, $after: ID) { messageAdded(sessionId: $s, after: $after) { id body author { id } } }`
	sendMsg    = `mutation($s: ID!, $b: String!) { sendMessage(sessionId: $s, body: $b) { id body } }`
	outputSub  = `subscription($id: ID!) { executionOutput(executionId: $id) { seq stream data status } }`
	executeOp  = `mutation($i: ExecuteInput!) { execute(input: $i) { id status } }`
)

// next waits for the next event of a subscription.
func next[T any](ctx context.Context, ch <-chan wsMsg, field string) (T, error) {
	var v T
	select {
	case m := <-ch:
		return v, event(m, field, &v)
	case <-ctx.Done():
		return v, fmt.Errorf("waiting for %s: %w", field, ctx.Err())
	}
}

// collect reads an executionOutput subscription to its end: the output,
// the statuses in order, and how many chunk events came.
func collect(ctx context.Context, ch <-chan wsMsg, onChunk func(output)) (stdout string, statuses []string, err error) {
	var sb strings.Builder
	for {
		select {
		case m, ok := <-ch:
			if !ok || m.Type == "complete" {
				return sb.String(), statuses, nil
			}
			var o output
			if err := event(m, "executionOutput", &o); err != nil {
				return sb.String(), statuses, err
			}
			if o.Data == nil {
				statuses = append(statuses, o.Status)
				if o.Status == "RUNNING" && len(statuses) > 1 {
					sb.Reset() // a new attempt replaces the output
				}
				continue
			}
			if o.Stream != nil && *o.Stream == "STDOUT" {
				sb.WriteString(*o.Data)
			}
			if onChunk != nil {
				onChunk(o)
			}
		case <-ctx.Done():
			return sb.String(), statuses, fmt.Errorf("run output: %w (so far %q, statuses %v)", ctx.Err(), sb.String(), statuses)
		}
	}
}

// claimed reports whether a worker's log has it claiming the execution.
func claimed(logs, id string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"run claimed"`) && strings.Contains(line, `"execution":"`+id+`"`) {
			return true
		}
	}
	return false
}

func isFinal(s string) bool { return s != "QUEUED" && s != "RUNNING" }

// TestStack is the smoke journey through the balancer: cross-replica
// chat, presence and run output, a worker killed mid-run, an API replica
// lost; nothing lost.
func TestStack(t *testing.T) {
	j := &journey{t: t, start: time.Now()}
	fmt.Printf("smoke journey through %s (compose project %s)\n", base, project)

	j.step("every container healthy", 4*time.Minute, func(ctx context.Context) error {
		return poll(ctx, time.Second, func() error {
			names, err := containers(ctx, "")
			if err != nil {
				return err
			}
			if len(names) < 10 {
				return fmt.Errorf("%d containers: %v", len(names), names)
			}
			for _, n := range names {
				st, err := docker(ctx, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", n)
				if err != nil {
					return err
				}
				if st != "running healthy" && st != "running " {
					return fmt.Errorf("%s: %s", n, st)
				}
			}
			return nil
		})
	})

	j.step("both API replicas answer through the balancer", time.Minute, func(ctx context.Context) error {
		seen := map[string]bool{}
		return poll(ctx, 100*time.Millisecond, func() error {
			res, err := http.Get(base + "/readyz")
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode == 200 {
				seen[res.Header.Get(replicaHeader)] = true
			}
			if !seen["api1"] || !seen["api2"] {
				return fmt.Errorf("replicas seen: %v", seen)
			}
			return nil
		})
	})

	j.step("Prometheus reports every target up", 2*time.Minute, func(ctx context.Context) error {
		return poll(ctx, time.Second, func() error {
			res, err := http.Get(prometheus + "/api/v1/targets?state=active")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			var r struct {
				Data struct {
					ActiveTargets []struct {
						Labels    map[string]string `json:"labels"`
						Health    string            `json:"health"`
						LastError string            `json:"lastError"`
					} `json:"activeTargets"`
				} `json:"data"`
			}
			if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
				return err
			}
			jobs := map[string]int{}
			for _, tg := range r.Data.ActiveTargets {
				if tg.Health != "up" {
					return fmt.Errorf("%s %s: %s %s", tg.Labels["job"], tg.Labels["instance"], tg.Health, tg.LastError)
				}
				jobs[tg.Labels["job"]]++
			}
			if jobs["codecrafter-api"] != 2 || jobs["codecrafter-worker"] != 2 || jobs["rabbitmq"] != 1 || jobs["prometheus"] != 1 {
				return fmt.Errorf("targets up by job: %v", jobs)
			}
			logf("up: %v", jobs)
			return nil
		})
	})

	j.step("the workers' warm sandboxes run under the configured runtime", time.Minute, func(ctx context.Context) error {
		// Unset, sandboxes take crun where the engine has it, else runc.
		want := env("CODECRAFTER_SANDBOX_RUNTIME", "")
		if want == "" {
			rts, err := docker(ctx, "info", "-f", "{{range $k, $v := .Runtimes}}{{$k}} {{end}}")
			if err != nil {
				return err
			}
			want = "runc"
			if slices.Contains(strings.Fields(rts), "crun") {
				want = "crun"
			}
		}
		workers, err := containers(ctx, "worker")
		if err != nil {
			return err
		}
		return poll(ctx, time.Second, func() error {
			for _, w := range workers {
				host, err := docker(ctx, "inspect", "-f", "{{.Config.Hostname}}", w)
				if err != nil {
					return err
				}
				// The worker's instance label: <prefix>-<its hostname>.
				out, err := docker(ctx, "ps", "--filter", "label=org.codecrafter.sandbox", "--format", `{{.ID}} {{.Label "org.codecrafter.sandbox"}}`)
				if err != nil {
					return err
				}
				box := ""
				for _, line := range strings.Split(out, "\n") {
					if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[1], "-"+host) {
						box = f[0]
					}
				}
				if box == "" {
					return fmt.Errorf("no warm sandbox of %s yet", w)
				}
				rt, err := docker(ctx, "inspect", "-f", "{{.HostConfig.Runtime}}", box)
				if err != nil {
					return err
				}
				if rt != want {
					return fmt.Errorf("a sandbox of %s runs under %q, want %q", w, rt, want)
				}
				logf("%s: sandbox %s under %s", w, box, rt)
			}
			return nil
		})
	})

	stamp := time.Now().UnixNano()
	var alice, bob user
	j.step("register two users", time.Minute, func(ctx context.Context) error {
		for _, u := range []*user{&alice, &bob} {
			name := map[*user]string{&alice: "Alice", &bob: "Bob"}[u]
			var r struct {
				Register struct {
					AccessToken string `json:"accessToken"`
					User        struct{ ID string }
				} `json:"register"`
			}
			replica, err := post(ctx, base, "", `mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }`,
				map[string]any{"i": map[string]any{"email": fmt.Sprintf("%s-%d@smoke.example", strings.ToLower(name), stamp), "password": "correct horse battery staple", "name": name}}, &r)
			if err != nil {
				return err
			}
			*u = user{ID: r.Register.User.ID, Name: name, Token: r.Register.AccessToken}
			logf("%s registered on %s", name, replica)
		}
		return nil
	})

	var sessionID string
	j.step("Alice creates a session, Bob joins", time.Minute, func(ctx context.Context) error {
		var c struct {
			CreateSession struct{ ID, InviteCode string }
		}
		if _, err := post(ctx, base, alice.Token, `mutation { createSession(input: {title: "smoke", language: "python"}) { id inviteCode } }`, nil, &c); err != nil {
			return err
		}
		sessionID = c.CreateSession.ID
		_, err := post(ctx, base, bob.Token, `mutation($c: String!) { joinSession(inviteCode: $c) { id } }`, map[string]any{"c": c.CreateSession.InviteCode}, nil)
		return err
	})

	var aliceWS, bobWS *wsClient
	j.step("Alice's socket on api1, Bob's on api2", time.Minute, func(ctx context.Context) (err error) {
		if aliceWS, err = dialReplica(ctx, base, alice.Token, "api1"); err != nil {
			return err
		}
		bobWS, err = dialReplica(ctx, base, bob.Token, "api2")
		return err
	})
	t.Cleanup(func() { aliceWS.Close(); bobWS.Close() })

	var presence, aliceChat <-chan wsMsg
	j.step("presence: Alice on api1 sees Bob come online through api2", 30*time.Second, func(ctx context.Context) (err error) {
		if presence, err = aliceWS.subscribe(`subscription($s: ID!) { presence(sessionId: $s) { user { id } online } }`, map[string]any{"s": sessionID}); err != nil {
			return err
		}
		if aliceChat, err = aliceWS.subscribe(messageSub, map[string]any{"s": sessionID}); err != nil {
			return err
		}
		// Holding any subscription to the session makes Bob online in it.
		if _, err := bobWS.subscribe(messageSub, map[string]any{"s": sessionID}); err != nil {
			return err
		}
		for {
			p, err := next[struct {
				User   struct{ ID string }
				Online bool
			}](ctx, presence, "presence")
			if err != nil {
				return err
			}
			if p.User.ID == bob.ID && p.Online {
				return nil
			}
		}
	})

	var lastSeen string // the last message id Alice received
	j.step("chat: a message sent through api2 reaches Alice's subscription on api1", 30*time.Second, func(ctx context.Context) error {
		var sent struct{ SendMessage message }
		if err := bobWS.do(ctx, sendMsg, map[string]any{"s": sessionID, "b": "hello from api2"}, &sent); err != nil {
			return err
		}
		m, err := next[message](ctx, aliceChat, "messageAdded")
		if err != nil {
			return err
		}
		if m.ID != sent.SendMessage.ID || m.Body != "hello from api2" || m.Author.ID != bob.ID {
			return fmt.Errorf("Alice got %+v, Bob sent %+v", m, sent.SendMessage)
		}
		lastSeen = m.ID
		return nil
	})

	execute := func(ctx context.Context, code string, timeLimitMs int) (string, error) {
		var r struct{ Execute struct{ ID, Status string } }
		err := bobWS.do(ctx, executeOp, map[string]any{"i": map[string]any{
			"sessionId": sessionID, "language": "python", "code": code, "timeLimitMs": timeLimitMs}}, &r)
		return r.Execute.ID, err
	}

	j.step("run output: a python run started through api2 streams to Alice on api1", 2*time.Minute, func(ctx context.Context) error {
		runs, err := aliceWS.subscribe(`subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status } }`, map[string]any{"s": sessionID})
		if err != nil {
			return err
		}
		id, err := execute(ctx, "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n", 10000)
		if err != nil {
			return err
		}
		// Alice learns of the run from api1's sessionExecutions...
		for {
			e, err := next[struct{ ID, Status string }](ctx, runs, "sessionExecutions")
			if err != nil {
				return err
			}
			if e.ID == id {
				break
			}
		}
		// ...and follows its output there.
		out, err := aliceWS.subscribe(outputSub, map[string]any{"id": id})
		if err != nil {
			return err
		}
		chunks := 0
		stdout, statuses, err := collect(ctx, out, func(output) { chunks++ })
		if err != nil {
			return err
		}
		want := "line 0\nline 1\nline 2\nline 3\nline 4\n"
		if stdout != want || statuses[len(statuses)-1] != "SUCCEEDED" {
			return fmt.Errorf("stdout %q, statuses %v; want %q, SUCCEEDED", stdout, statuses, want)
		}
		logf("%d output chunks, statuses %v", chunks, statuses)
		return nil
	})

	j.step("a worker killed mid-run: the run ends once, SUCCEEDED, with its whole output", 3*time.Minute, func(ctx context.Context) error {
		const lines = 40
		id, err := execute(ctx, fmt.Sprintf("import time\nfor i in range(%d):\n    print('tick', i, flush=True)\n    time.sleep(0.25)\n", lines), 30000)
		if err != nil {
			return err
		}
		out, err := aliceWS.subscribe(outputSub, map[string]any{"id": id})
		if err != nil {
			return err
		}
		killed := make(chan error, 1)
		first := true
		stdout, statuses, err := collect(ctx, out, func(o output) {
			if !first {
				return
			}
			first = false
			// Output is flowing: kill the worker that claimed the run.
			workers, err := containers(ctx, "worker")
			if err != nil {
				killed <- err
				return
			}
			for _, w := range workers {
				logs, err := docker(ctx, "logs", w)
				if err == nil && claimed(logs, id) {
					_, err = docker(ctx, "kill", w)
					logf("killed %s after the first chunk (seq %d): %v", w, o.Seq, err)
					killed <- err
					return
				}
			}
			killed <- fmt.Errorf("no worker of %v logged claiming %s", workers, id)
		})
		if err != nil {
			return err
		}
		select {
		case err := <-killed:
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("the run ended before any output: statuses %v", statuses)
		}
		var want strings.Builder
		for i := range lines {
			fmt.Fprintf(&want, "tick %d\n", i)
		}
		finals := slices.DeleteFunc(slices.Clone(statuses), func(s string) bool { return !isFinal(s) })
		if len(finals) != 1 || finals[0] != "SUCCEEDED" || stdout != want.String() {
			return fmt.Errorf("statuses %v (want one final, SUCCEEDED), stdout %q", statuses, stdout)
		}
		logf("statuses on Alice's subscription: %v", statuses)
		var e struct {
			Execution struct{ Status, Stdout string }
		}
		if _, err := post(ctx, base, alice.Token, `query($id: ID!) { execution(id: $id) { status stdout } }`, map[string]any{"id": id}, &e); err != nil {
			return err
		}
		if e.Execution.Status != "SUCCEEDED" || e.Execution.Stdout != want.String() {
			return fmt.Errorf("stored: %s, stdout %q", e.Execution.Status, e.Execution.Stdout)
		}
		return nil
	})

	j.step("api1 stopped: Alice reconnects through the balancer and resumes without losing a message", 3*time.Minute, func(ctx context.Context) error {
		api1, err := containers(ctx, "api1")
		if err != nil || len(api1) != 1 {
			return fmt.Errorf("api1 containers %v: %v", api1, err)
		}
		// A message Alice gets live on api1 before it goes.
		var before struct{ SendMessage message }
		if err := bobWS.do(ctx, sendMsg, map[string]any{"s": sessionID, "b": "before the stop"}, &before); err != nil {
			return err
		}
		if m, err := next[message](ctx, aliceChat, "messageAdded"); err != nil || m.ID != before.SendMessage.ID {
			return fmt.Errorf("before the stop, Alice got %+v (%v), want %s", m, err, before.SendMessage.ID)
		} else {
			lastSeen = m.ID
		}
		stopped := make(chan error, 1)
		go func() {
			_, err := docker(ctx, "stop", api1[0])
			stopped <- err
		}()
		// Bob keeps talking (on api2) while api1 goes away.
		var sent []string
		send := func(ws *wsClient, body string) error {
			var r struct{ SendMessage message }
			if ws != nil {
				if err := ws.do(ctx, sendMsg, map[string]any{"s": sessionID, "b": body}, &r); err != nil {
					return err
				}
			} else {
				replica, err := post(ctx, base, bob.Token, sendMsg, map[string]any{"s": sessionID, "b": body}, &r)
				if err != nil {
					return err
				}
				if replica != "api2" {
					return fmt.Errorf("with api1 stopped, the balancer sent a request to %q", replica)
				}
			}
			sent = append(sent, r.SendMessage.ID)
			return nil
		}
		// Alice's subscription on api1 ends when it shuts down; she keeps
		// what she received up to then.
		var got []message
		down := false
		// Paced (chat allows 60 messages a minute per user): one every
		// 300 ms until Alice's socket ends.
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; !down; {
			select {
			case <-tick.C:
				if i == 40 {
					return fmt.Errorf("Alice's socket on api1 still open after %d messages", i)
				}
				if err := send(bobWS, fmt.Sprintf("during shutdown %d", i)); err != nil {
					return err
				}
				i++
			case m, ok := <-aliceChat:
				if !ok || m.Type != "next" {
					down = true
					continue
				}
				var msg message
				if err := event(m, "messageAdded", &msg); err != nil {
					return err
				}
				got = append(got, msg)
				lastSeen = msg.ID
			case <-aliceWS.done:
				down = true
			case <-ctx.Done():
				return fmt.Errorf("api1's socket never closed: %w", ctx.Err())
			}
		}
		logf("Alice's socket on api1 ended (%v) after %d live messages", aliceWS.err, len(got))
		if err := <-stopped; err != nil {
			return err
		}
		logf("%s stopped", api1[0])
		for i := range 3 { // through the balancer, which now has api2 only
			if err := send(nil, fmt.Sprintf("after the stop %d", i)); err != nil {
				return err
			}
		}
		// Reconnect through the balancer, resume after the last id seen.
		var ws *wsClient
		if err := poll(ctx, 200*time.Millisecond, func() (err error) { ws, err = dialWS(ctx, base, alice.Token); return err }); err != nil {
			return err
		}
		defer ws.Close()
		if ws.Replica != "api2" {
			return fmt.Errorf("reconnected on %q", ws.Replica)
		}
		resumed, err := ws.subscribe(messageSub, map[string]any{"s": sessionID, "after": lastSeen})
		if err != nil {
			return err
		}
		if err := send(bobWS, "after the reconnect"); err != nil {
			return err
		}
		for len(got) < len(sent) {
			m, err := next[message](ctx, resumed, "messageAdded")
			if err != nil {
				return fmt.Errorf("%d of %d messages: %w", len(got), len(sent), err)
			}
			got = append(got, m)
		}
		ids := make([]string, len(got))
		for i, m := range got {
			ids[i] = m.ID
		}
		if !slices.Equal(ids, sent) {
			return fmt.Errorf("Alice got %v, Bob sent %v", ids, sent)
		}
		logf("Alice has all %d messages Bob sent, in order, once (resumed on %s after %s)", len(sent), ws.Replica, lastSeen)
		return nil
	})
	fmt.Printf("[%6.1fs] smoke journey passed\n", time.Since(j.start).Seconds())
}
