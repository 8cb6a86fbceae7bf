package main

// bench runs measures what users see of runs under load, through a real
// serve child of this binary (embedded store, in-process queue and bus,
// in-process worker on the local Docker engine), beside `docker run --rm`
// of the same program in the same image, in the same run: the figures are
// read as ratios to that baseline (see BENCHMARKS.md).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

type runsOpts struct {
	Scenarios string
	Samples   int           // back-to-back runs, and docker run --rm samples
	Burst     int           // runs submitted at once
	Users     int           // users of the steady scenario
	Every     time.Duration // each user's period
	Duration  time.Duration // of the steady scenario
	Image     string
	Code      string
}

func runsFlags(fs *flag.FlagSet, o *runsOpts) {
	fs.StringVar(&o.Scenarios, "scenarios", "b2b,burst,users", "what to measure, in order: b2b (back-to-back runs of one user), burst (runs submitted at once), users (users each running periodically)")
	fs.IntVar(&o.Samples, "samples", 40, "back-to-back runs, and `docker run --rm` samples of the baseline")
	fs.IntVar(&o.Burst, "burst", 40, "runs submitted at once, each followed on its own executionOutput subscription")
	fs.IntVar(&o.Users, "users", 20, "users of the users scenario, each with a session and a sessionExecutions subscription")
	fs.DurationVar(&o.Every, "every", 2*time.Second, "how often each user of the users scenario runs")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "how long the users scenario lasts")
	fs.StringVar(&o.Image, "image", "codecrafter/python", "image of the baseline's docker run --rm")
	fs.StringVar(&o.Code, "code", `print("hello")`, "the python program every run runs")
}

// runsResult is one scenario's measure.
type runsResult struct {
	name    string
	n       int
	failed  int
	lat     []time.Duration // sorted
	elapsed time.Duration   // first submit to last final
	note    string
	// CPU per run of the serve process (API, store, worker), of the
	// engine (dockerd, containerd, the shims and the runc they reaped),
	// and of the whole machine (everything: the bench's own clients, the
	// boxes, the kernel's work for them, and whatever else runs).
	serveCPU, engineCPU, machineCPU time.Duration
	// stolen is the share of the cores' time the hypervisor gave to
	// other guests during the scenario (/proc/stat steal): a virtual
	// machine's figures are comparable only at a like share.
	stolen float64
}

func (r *runsResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n-r.failed) / r.elapsed.Seconds()
}

func runRuns(ctx context.Context, exe string, o runsOpts, stdout, log io.Writer) error {
	raiseNoFile(log)
	fmt.Fprintf(log, "bench runs: load average before: %s\n", loadAvg())
	p := &runsTarget{}
	defer p.stop()
	if err := p.start(ctx, exe, log); err != nil {
		return fmt.Errorf("start serve: %w", err)
	}
	if err := p.prepare(ctx, max(o.Users, 1)); err != nil {
		return err
	}
	// Warm up: connections open, images in the page cache.
	if _, err := p.b2b(ctx, o.Code, 3); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	// What the machine does without us, to read machineCPU against.
	p.waitPool(ctx, 30*time.Second)
	idle0 := machineCPU()
	time.Sleep(3 * time.Second)
	idle := (machineCPU() - idle0) / 3
	fmt.Fprintf(log, "bench runs: docker run --rm baseline, %d samples\n", o.Samples)
	base, err := dockerRunBaseline(ctx, o.Image, o.Code, o.Samples)
	if err != nil {
		return err
	}
	var results []*runsResult
	for _, sc := range strings.Split(o.Scenarios, ",") {
		p.waitPool(ctx, 30*time.Second) // each scenario starts from a settled pool
		fmt.Fprintf(log, "bench runs: %s (load average %s)\n", sc, loadAvg())
		var r *runsResult
		serve0, engine0, machine0, steal0, t0 := procCPU(p.child.cmd.Process.Pid), engineCPU(), machineCPU(), stealCPU(), time.Now()
		switch strings.TrimSpace(sc) {
		case "b2b":
			r, err = p.b2b(ctx, o.Code, o.Samples)
		case "burst":
			r, err = p.burst(ctx, o.Code, o.Burst)
		case "users":
			r, err = p.steady(ctx, o.Code, o.Users, o.Every, o.Duration)
		default:
			return fmt.Errorf("-scenarios: unknown %q", sc)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		if r.n > 0 {
			r.serveCPU = (procCPU(p.child.cmd.Process.Pid) - serve0) / time.Duration(r.n)
			r.engineCPU = (engineCPU() - engine0) / time.Duration(r.n)
			r.machineCPU = (machineCPU() - machine0) / time.Duration(r.n)
		}
		r.stolen = float64(stealCPU()-steal0) / float64(time.Since(t0)*time.Duration(runtime.NumCPU()))
		results = append(results, r)
	}
	// The baseline again, after: the machine's load may have moved.
	after, err := dockerRunBaseline(ctx, o.Image, o.Code, max(o.Samples/2, 5))
	if err != nil {
		return err
	}
	printRuns(stdout, base, after, results, p.pool)
	fmt.Fprintf(stdout, "machine CPU busy per second before the scenarios, nothing running of ours: %s\n", msStr(idle))
	fmt.Fprintf(stdout, "\nserve's counters at the end:\n%s", p.counters(ctx))
	fmt.Fprintf(log, "bench runs: load average after: %s\n", loadAvg())
	return nil
}

func printRuns(w io.Writer, base, after []time.Duration, results []*runsResult, pool string) {
	b50 := pctl(base, 50)
	fmt.Fprintf(w, "docker run --rm --network none (python hello): p50 %s, p99 %s (%d samples); after the scenarios: p50 %s\n",
		msStr(b50), msStr(pctl(base, 99)), len(base), msStr(pctl(after, 50)))
	fmt.Fprintf(w, "serve: embedded store, in-process queue and bus, worker concurrency %s, pool %s\n\n",
		envSet("CODECRAFTER_WORKER_CONCURRENCY", "4 (default)"), pool)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\truns\tfailed\tp50\tp99\truns/s\tp50/docker-run-p50\tp99/docker-run-p50\ttarget\t")
	for _, r := range results {
		target, met := "", false
		p50, p99 := ratio(pctl(r.lat, 50), b50), ratio(pctl(r.lat, 99), b50)
		switch r.name {
		case "b2b":
			target, met = "p50 ≤ 0.25×", p50 <= 0.25
		case "burst":
			target, met = "≥ 15 runs/s", r.rate() >= 15
		case "users":
			target, met = "p99 ≤ 1×, 0 failed", p99 <= 1 && r.failed == 0
		}
		verdict := "MET"
		if !met {
			verdict = "not met"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%.3f\t%.3f\t%s: %s\t\n", r.name, r.n, r.failed,
			msStr(pctl(r.lat, 50)), msStr(pctl(r.lat, 99)), r.rate(), p50, p99, target, verdict)
	}
	tw.Flush()
	for _, r := range results {
		engine := msStr(r.engineCPU)
		if r.engineCPU < 0 { // more CPU left with reaped shims than was counted (see engineCPU)
			engine = "unknown (exited shims took their CPU along)"
		}
		fmt.Fprintf(w, "%s: CPU per run: serve %s, engine %s, machine %s; stolen by the hypervisor: %.0f%% of the cores' time",
			r.name, msStr(r.serveCPU), engine, msStr(r.machineCPU), 100*r.stolen)
		if r.note != "" {
			fmt.Fprintf(w, "; %s", r.note)
		}
		fmt.Fprintln(w)
	}
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// envSet returns the environment variable k, or def when it is empty.
func envSet(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// dockerRunBaseline times `docker run --rm` of the program, one after the other.
func dockerRunBaseline(ctx context.Context, image, code string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", code)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("docker run: %v: %s", err, b)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out, nil
}

func pctl(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

// runsTarget is the serve child and its users, each with a session.
type runsTarget struct {
	platformTarget
	metrics  string // the child's /metrics URL
	sessions []string
	pool     string
}

func (p *runsTarget) start(ctx context.Context, exe string, log io.Writer) error {
	var err error
	if p.dir, err = os.MkdirTemp("", "codecrafter-bench-"); err != nil {
		return err
	}
	maddr, err := freeAddr()
	if err != nil {
		return err
	}
	p.metrics = "http://" + maddr + "/metrics"
	env := []string{
		"CODECRAFTER_ADDR=127.0.0.1:0", "CODECRAFTER_DATA_DIR=" + p.dir, "CODECRAFTER_WORKER=on",
		"MONGO_URI=", "REDIS_URL=", "AMQP_URL=", "CODECRAFTER_METRICS_ADDR=" + maddr, "CODECRAFTER_ENV=development",
		"CODECRAFTER_LOG_FORMAT=json", "CODECRAFTER_LOG_LEVEL=info", "CODECRAFTER_SANDBOX_INSTANCE=bench-runs",
		"CODECRAFTER_RUNS_PER_MINUTE=100000000", "CODECRAFTER_MAX_ACTIVE_RUNS=100000", "CODECRAFTER_WS_MAX_PER_USER=100000",
		"CODECRAFTER_WS_CONNECTS_PER_MINUTE=100000000", "CODECRAFTER_REGISTER_MAX_PER_ADDR=100000000",
		"CODECRAFTER_ARGON2_MEMORY_KIB=8", "CODECRAFTER_ARGON2_PASSES=1",
	}
	// The operator's pool and worker settings pass through (os.Environ).
	p.pool = envSet("CODECRAFTER_POOL", "") + envSet("CODECRAFTER_POOL_SIZE", "")
	if p.pool == "" {
		p.pool = "default"
	}
	c, stdout, stderr, err := startChild(ctx, exe, []string{"serve"}, env)
	if err != nil {
		return err
	}
	p.child = c
	go io.Copy(io.Discard, stdout)
	line, err := awaitLine(stderr, `"msg":"serving"`, errorLines{log})
	if err != nil {
		return err
	}
	var l struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &l); err != nil || l.Addr == "" {
		return fmt.Errorf("serving line %q: %v", line, err)
	}
	p.url = l.Addr + "/graphql"
	p.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: time.Minute}
	return nil
}

// prepare registers n users, each with a session of their own.
func (p *runsTarget) prepare(ctx context.Context, n int) error {
	p.users = n
	p.tokens, p.sessions = make([]string, n), make([]string, n)
	return parallel(4, n, func(i int) error {
		var out struct{ Register struct{ AccessToken string } }
		if err := p.gql(ctx, "", `mutation($in: RegisterInput!) { register(input: $in) { accessToken } }`,
			map[string]any{"in": map[string]any{"email": fmt.Sprintf("runs%d@example.com", i), "password": "bench password", "name": fmt.Sprint("runs", i)}}, &out); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		p.tokens[i] = out.Register.AccessToken
		var s struct{ CreateSession struct{ ID string } }
		if err := p.gql(ctx, p.tokens[i], `mutation($in: CreateSessionInput!) { createSession(input: $in) { id } }`,
			map[string]any{"in": map[string]any{"title": "bench", "language": "python"}}, &s); err != nil {
			return fmt.Errorf("createSession: %w", err)
		}
		p.sessions[i] = s.CreateSession.ID
		return nil
	})
}

// waitPool waits, untimed, until the pool gauges stop rising (or d).
func (p *runsTarget) waitPool(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	last, stable := -1.0, 0
	for time.Now().Before(deadline) && ctx.Err() == nil && stable < 5 {
		v := p.poolReady(ctx)
		if v == last && v > 0 {
			stable++
		} else {
			stable = 0
		}
		last = v
		time.Sleep(100 * time.Millisecond)
	}
}

// counters returns the child's metrics that explain the figures: where
// containers came from, runs deferred for fairness, queue waits.
func (p *runsTarget) counters(ctx context.Context) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		return err.Error() + "\n"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range []string{"codecrafter_sandbox_containers_acquired_total{", "codecrafter_runs_deferred_total",
			"codecrafter_run_queue_wait_seconds_sum", "codecrafter_run_queue_wait_seconds_count", "codecrafter_runs_total{",
			"codecrafter_sandbox_containers_started_total{"} {
			if strings.HasPrefix(line, name) {
				fmt.Fprintf(&out, "  %s\n", line)
			}
		}
	}
	return out.String()
}

// poolReady sums codecrafter_sandbox_pool_ready over languages.
func (p *runsTarget) poolReady(ctx context.Context) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "codecrafter_sandbox_pool_ready{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

const runsExecQ = `mutation($in: ExecuteInput!) { execute(input: $in) { id status } }`

func (p *runsTarget) execute(ctx context.Context, user int, code string) (string, error) {
	var out struct{ Execute struct{ ID string } }
	err := p.gql(ctx, p.tokens[user], runsExecQ, map[string]any{"in": map[string]any{
		"language": "python", "code": code, "sessionId": p.sessions[user]}}, &out)
	return out.Execute.ID, err
}

// b2b runs n runs of user 0, each as soon as the previous one ended.
func (p *runsTarget) b2b(ctx context.Context, code string, n int) (*runsResult, error) {
	ws, err := p.sessionSocket(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer ws.close()
	r := &runsResult{name: "b2b", n: n}
	begin := time.Now()
	for range n {
		start := time.Now()
		id, err := p.execute(ctx, 0, code)
		if err != nil {
			return nil, err
		}
		if st := ws.final(ctx, id, time.Minute); st != "SUCCEEDED" {
			r.failed++
		}
		r.lat = append(r.lat, time.Since(start))
	}
	r.elapsed = time.Since(begin)
	slices.Sort(r.lat)
	return r, nil
}

// burst submits n runs at once (spread over the users), each followed on
// its own executionOutput subscription; latency is from the burst's start.
func (p *runsTarget) burst(ctx context.Context, code string, n int) (*runsResult, error) {
	r := &runsResult{name: "burst", n: n, lat: make([]time.Duration, n)}
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			u := i % p.users
			id, err := p.execute(ctx, u, code)
			if err == nil {
				var st string
				st, err = p.followOutput(ctx, u, id)
				if err == nil && st != "SUCCEEDED" {
					err = fmt.Errorf("status %s", st)
				}
			}
			if err != nil {
				failed.Add(1)
			}
			r.lat[i] = time.Since(start)
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.failed = int(failed.Load())
	slices.Sort(r.lat)
	return r, nil
}

// steady has each user run every period (at a random phase) for d.
func (p *runsTarget) steady(ctx context.Context, code string, users int, every, d time.Duration) (*runsResult, error) {
	socks := make([]*benchSocket, users)
	for i := range users {
		ws, err := p.sessionSocket(ctx, i)
		if err != nil {
			return nil, err
		}
		defer ws.close()
		socks[i] = ws
	}
	r := &runsResult{name: "users"}
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := time.Now()
	end := begin.Add(d)
	for i := range users {
		wg.Go(func() {
			next := begin.Add(time.Duration(rand.Int64N(int64(every))))
			var inner sync.WaitGroup
			defer inner.Wait()
			for next.Before(end) {
				time.Sleep(time.Until(next))
				next = next.Add(every)
				inner.Go(func() {
					start := time.Now()
					id, err := p.execute(ctx, i, code)
					ok := err == nil && socks[i].final(ctx, id, time.Minute) == "SUCCEEDED"
					mu.Lock()
					defer mu.Unlock()
					r.n++
					r.lat = append(r.lat, time.Since(start))
					if !ok {
						r.failed++
					}
				})
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(begin)
	slices.Sort(r.lat)
	r.note = fmt.Sprintf("%d users × one run per %s for %s (offered %.1f runs/s)", users, every, d, float64(users)/every.Seconds())
	return r, nil
}

// benchSocket is a graphql-transport-ws connection of one user holding a
// sessionExecutions subscription; it records every final status by run.
type benchSocket struct {
	conn *websocket.Conn
	wmu  sync.Mutex

	mu     sync.Mutex
	finals map[string]string
	wait   map[string]chan string
	closed chan struct{}
}

func (p *runsTarget) dialUser(ctx context.Context, user int) (*websocket.Conn, error) {
	return dialGraphQL(ctx, p.url, p.tokens[user])
}

type wsMsg struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

func (p *runsTarget) sessionSocket(ctx context.Context, user int) (*benchSocket, error) {
	conn, err := p.dialUser(ctx, user)
	if err != nil {
		return nil, err
	}
	s := &benchSocket{conn: conn, finals: map[string]string{}, wait: map[string]chan string{}, closed: make(chan struct{})}
	sub := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status } }`,
		"variables": map[string]any{"s": p.sessions[user]},
	}}
	if err := conn.WriteJSON(sub); err != nil {
		conn.Close()
		return nil, err
	}
	go s.read()
	return s, nil
}

func (s *benchSocket) read() {
	defer close(s.closed)
	for {
		var m wsMsg
		if err := s.conn.ReadJSON(&m); err != nil {
			return
		}
		switch m.Type {
		case "ping":
			s.wmu.Lock()
			s.conn.WriteJSON(map[string]string{"type": "pong"})
			s.wmu.Unlock()
		case "next":
			var ev struct {
				Data struct{ SessionExecutions struct{ ID, Status string } }
			}
			if json.Unmarshal(m.Payload, &ev) != nil {
				continue
			}
			e := ev.Data.SessionExecutions
			if e.Status == "QUEUED" || e.Status == "RUNNING" || e.Status == "" {
				continue
			}
			s.mu.Lock()
			s.finals[e.ID] = e.Status
			if ch := s.wait[e.ID]; ch != nil {
				ch <- e.Status
				delete(s.wait, e.ID)
			}
			s.mu.Unlock()
		case "error", "complete":
			return
		}
	}
}

// final waits for run id's final status ("" when it did not come).
func (s *benchSocket) final(ctx context.Context, id string, d time.Duration) string {
	s.mu.Lock()
	if st, ok := s.finals[id]; ok {
		delete(s.finals, id)
		s.mu.Unlock()
		return st
	}
	ch := make(chan string, 1)
	s.wait[id] = ch
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case st := <-ch:
		return st
	case <-t.C:
	case <-s.closed:
	case <-ctx.Done():
	}
	return ""
}

func (s *benchSocket) close() { s.conn.Close() }

// followOutput subscribes to one run's executionOutput on a socket of its
// own and returns its final status.
func (p *runsTarget) followOutput(ctx context.Context, user int, id string) (string, error) {
	conn, err := p.dialUser(ctx, user)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sub := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($id: ID!) { executionOutput(executionId: $id) { seq status } }`,
		"variables": map[string]any{"id": id},
	}}
	if err := conn.WriteJSON(sub); err != nil {
		return "", err
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	status := ""
	for {
		var m wsMsg
		if err := conn.ReadJSON(&m); err != nil {
			return status, err
		}
		switch m.Type {
		case "ping":
			conn.WriteJSON(map[string]string{"type": "pong"})
		case "next":
			var ev struct {
				Data struct{ ExecutionOutput struct{ Status string } }
			}
			if json.Unmarshal(m.Payload, &ev) == nil {
				status = ev.Data.ExecutionOutput.Status
			}
		case "complete":
			return status, nil
		case "error":
			return status, fmt.Errorf("subscription error: %s", m.Payload)
		}
	}
}

func benchRuns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runsOpts
	runsFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return runRuns(ctx, exe, o, stdout, stderr)
}

// procCPU is a process's CPU time (user + system) and its reaped children's.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		var v int64
		fmt.Sscan(f[i], &v)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ 100
}

// machineCPU is the CPU time all cores spent busy, from /proc/stat: user,
// nice, system, irq and softirq (not idle, iowait, steal, nor guest,
// which user already holds).
func machineCPU() time.Duration {
	var busy time.Duration
	for i, v := range cpuStat() {
		if i != 3 && i != 4 && i < 7 {
			busy += v
		}
	}
	return busy
}

// stealCPU is the time the hypervisor ran other guests while this
// machine's cores wanted to run (/proc/stat steal, all cores).
func stealCPU() time.Duration {
	if f := cpuStat(); len(f) > 7 {
		return f[7]
	}
	return 0
}

// cpuStat is /proc/stat's line for all cores: user, nice, system, idle,
// iowait, irq, softirq, steal, guest, guest_nice.
func cpuStat() []time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var out []time.Duration
	for _, f := range strings.Fields(line)[1:] {
		var v int64
		fmt.Sscan(f, &v)
		out = append(out, time.Duration(v)*10*time.Millisecond) // USER_HZ 100
	}
	return out
}

// engineCPU sums procCPU of dockerd, containerd and every containerd-shim,
// alive or a zombie (their parent may not reap them; then an exited
// shim's CPU is still readable, else it is lost and this is a floor).
func engineCPU() time.Duration {
	var sum time.Duration
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue
		}
		if c := strings.TrimSpace(string(comm)); c == "dockerd" || c == "containerd" || strings.HasPrefix(c, "containerd-shim") {
			var pid int
			fmt.Sscan(filepath.Base(dir), &pid)
			sum += procCPU(pid)
		}
	}
	return sum
}
