package main

// bench fanout measures the realtime chat fan-out (messageAdded) of a real
// serve process against a raw gorilla/websocket broadcast of the same
// frames to the same number of sockets, both child processes of this
// binary, in one run: the platform's figures are read as ratios to the
// raw ones (see BENCHMARKS.md).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

const benchUsage = `Usage:
  codecrafter bench fanout [flags]   messageAdded fan-out vs a raw WebSocket broadcast
  codecrafter bench rawserver        (the raw baseline, started by fanout)
  codecrafter bench runs [flags]     runs under load vs docker run --rm
`

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return errors.New("bench: which one?")
	}
	switch args[0] {
	case "fanout":
		fs := flag.NewFlagSet("bench fanout", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var o fanoutOpts
		rates := fs.String("rate", "20", "messages per second, or a comma-separated list of rates run one after the other on the same sockets")
		fs.IntVar(&o.Subscribers, "subscribers", 1000, "subscribed sockets")
		fs.IntVar(&o.Users, "users", 0, "users sharing the sockets (default: one per 30 sockets; the server allows 32 each)")
		fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each rate is sent")
		fs.IntVar(&o.Payload, "payload", 100, "characters of each message body")
		fs.DurationVar(&o.Idle, "idle", 3*time.Second, "how long the subscribed sockets stay idle before the RSS is read")
		fs.StringVar(&o.Profile, "profile", "", "directory for pprof heap and goroutine profiles of serve at the idle point")
		fs.IntVar(&o.Senders, "senders", 64, "sends in flight at most (1: each waits for the previous one's answer, so the order is kept but the rate may fall behind)")
		fs.StringVar(&o.Targets, "targets", "raw,platform", "what to measure: raw, platform or both")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		for _, r := range strings.Split(*rates, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
			if err != nil || v <= 0 {
				return fmt.Errorf("-rate: %q is not a positive number", r)
			}
			o.Rates = append(o.Rates, v)
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		res, err := runFanout(ctx, exe, o, stderr)
		if err != nil {
			return err
		}
		res.print(stdout)
		return nil
	case "rawserver":
		return rawServer(ctx, stdout)
	case "runs":
		return benchRuns(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, benchUsage)
		return fmt.Errorf("bench: unknown %q", args[0])
	}
}

type fanoutOpts struct {
	Subscribers, Users int
	Rates              []float64
	Duration           time.Duration
	Payload            int
	Idle               time.Duration
	Profile            string
	Targets            string
	Senders            int
}

// fanoutResults is one run: raw and platform, each at every rate.
type fanoutResults struct {
	Opts     fanoutOpts
	Raw      *targetResult
	Platform *targetResult
}

type targetResult struct {
	Name                string
	RSSBefore, RSSAfter int64 // bytes, before connecting and with every socket subscribed and idle
	SetupTime           time.Duration
	Rounds              []roundResult
}

func (t *targetResult) rssPerConn(n int) float64 { return float64(t.RSSAfter-t.RSSBefore) / float64(n) }

type roundResult struct {
	Rate                      float64
	Sent, SendErrors          int
	SentPerSec                float64 // the publisher's achieved rate: a slow send is late, not skipped
	Expected, Delivered, Dups int64
	Lost                      int64
	PerSec                    float64 // unique deliveries / (last delivery - first send)
	P50, P99, Max             time.Duration
}

// runFanout starts the children of exe, connects, measures and stops them.
func runFanout(ctx context.Context, exe string, o fanoutOpts, log io.Writer) (*fanoutResults, error) {
	if o.Users <= 0 {
		o.Users = (o.Subscribers + 29) / 30
	}
	if o.Payload < 40 || o.Payload > 4000 {
		return nil, errors.New("-payload must be 40..4000 characters (the chat's limit)")
	}
	log = &syncWriter{w: log} // children's logs are copied in too
	raiseNoFile(log)
	res := &fanoutResults{Opts: o}
	for _, t := range strings.Split(o.Targets, ",") {
		var tgt fanoutTarget
		switch strings.TrimSpace(t) {
		case "raw":
			tgt = &rawTarget{}
		case "platform":
			tgt = &platformTarget{users: o.Users, profiled: o.Profile != ""}
		default:
			return nil, fmt.Errorf("-targets: %q is not raw or platform", t)
		}
		r, err := measure(ctx, exe, tgt, o, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		if r.Name == "raw" {
			res.Raw = r
		} else {
			res.Platform = r
		}
	}
	return res, nil
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// raiseNoFile lifts the open-files limit to its hard limit, for this
// process and (inherited) its children: 10,000 sockets need it.
func raiseNoFile(log io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fmt.Fprintln(log, "bench: raising RLIMIT_NOFILE:", err)
	}
}

// fanoutTarget is a server under test: it starts, gets ready for sockets,
// opens one subscribed socket, and publishes a frame carrying body.
type fanoutTarget interface {
	name() string
	start(ctx context.Context, exe string, log io.Writer) (pid int, err error)
	prepare(ctx context.Context) error
	dial(ctx context.Context, i int) (*websocket.Conn, error)
	publish(ctx context.Context, body string) error
	profile(dir string) error
	cpuProfile(dir string, d time.Duration) error
	stop()
}

// measure runs one target: sockets, idle RSS, then every rate.
func measure(ctx context.Context, exe string, tgt fanoutTarget, o fanoutOpts, log io.Writer) (*targetResult, error) {
	res := &targetResult{Name: tgt.name()}
	pid, err := tgt.start(ctx, exe, log)
	if err != nil {
		return nil, err
	}
	defer tgt.stop()
	if err := tgt.prepare(ctx); err != nil {
		return nil, err
	}
	time.Sleep(o.Idle) // as before the second reading: both of a settled process
	if res.RSSBefore, err = readRSS(pid); err != nil {
		return nil, err
	}

	var total int // messages over all rounds
	for _, r := range o.Rates {
		total += roundMessages(r, o.Duration)
	}
	fmt.Fprintf(log, "bench: %s: connecting %d sockets\n", tgt.name(), o.Subscribers)
	begin := time.Now()
	clients := make([]*fanoutClient, o.Subscribers)
	var readers sync.WaitGroup
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.conn.Close()
			}
		}
		readers.Wait()
	}()
	var ready sync.WaitGroup
	var recv atomic.Int64          // first receipts of seqs, all rounds
	sem := make(chan struct{}, 16) // below the server's 64 unauthenticated sockets per address
	errc := make(chan error, 1)
	var dialing sync.WaitGroup
	for i := range clients {
		select {
		case sem <- struct{}{}:
		case err := <-errc:
			dialing.Wait()
			return nil, err
		}
		dialing.Add(1)
		go func() {
			defer dialing.Done()
			defer func() { <-sem }()
			conn, err := tgt.dial(ctx, i)
			if err != nil {
				select {
				case errc <- fmt.Errorf("socket %d: %w", i, err):
				default:
				}
				return
			}
			c := &fanoutClient{conn: conn, counts: make([]uint8, total), lat: make([]int32, total), recv: &recv}
			clients[i] = c
			ready.Add(1)
			readers.Go(func() { c.read(&ready) })
		}()
	}
	dialing.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	// Every socket has seen a first frame once a "ready" one reached all.
	if err := tgt.publish(ctx, benchMarker+"ready"); err != nil {
		return nil, err
	}
	if err := waitGroupWithin(&ready, 10*time.Minute); err != nil { // 10,000 subscriptions replaying
		return nil, fmt.Errorf("sockets never all live: %w", err)
	}
	res.SetupTime = time.Since(begin)
	fmt.Fprintf(log, "bench: %s: %d sockets subscribed in %v; idle %v\n", tgt.name(), o.Subscribers, res.SetupTime.Round(time.Millisecond), o.Idle)
	time.Sleep(o.Idle) // the measurement is of idle sockets: nothing to wait for
	if res.RSSAfter, err = readRSS(pid); err != nil {
		return nil, err
	}
	if o.Profile != "" {
		if err := tgt.profile(o.Profile); err != nil {
			return nil, err
		}
	}

	sendAt := make([]int64, total) // unix ns of each seq's send; 0: not sent
	base := 0
	type span struct{ base, n int }
	var spans []span
	var profiling sync.WaitGroup
	defer profiling.Wait()
	for round, rate := range o.Rates {
		n := roundMessages(rate, o.Duration)
		rr := roundResult{Rate: rate}
		if o.Profile != "" && round == 0 { // the first rate, while it is sent
			profiling.Go(func() {
				if err := tgt.cpuProfile(o.Profile, o.Duration*8/10); err != nil {
					fmt.Fprintln(log, "bench: cpu profile:", err)
				}
			})
		}
		before := recv.Load()
		rr.Sent, rr.SendErrors = publishRound(ctx, tgt, base, n, rate, o.Payload, max(o.Senders, 1), sendAt)
		rr.Expected = int64(rr.Sent) * int64(o.Subscribers)
		drain(&recv, before+rr.Expected)
		res.Rounds = append(res.Rounds, rr)
		spans = append(spans, span{base, n})
		base += n
	}
	// Stop the readers before reading what they recorded.
	for _, c := range clients {
		c.conn.Close()
	}
	readers.Wait()
	for i, sp := range spans {
		res.Rounds[i].tally(clients, sendAt[sp.base:sp.base+sp.n], sp.base)
	}
	return res, nil
}

// roundMessages is how many messages rate sends in d (at least one).
func roundMessages(rate float64, d time.Duration) int {
	return max(1, int(math.Round(rate*d.Seconds())))
}

// publishRound sends n messages at rate, each at its time on the
// schedule (a late one does not delay the next), each body carrying its
// seq and send time; it returns when every send has answered.
func publishRound(ctx context.Context, tgt fanoutTarget, base, n int, rate float64, payload, senders int, sendAt []int64) (sent, failed int) {
	var wg sync.WaitGroup
	var ok, bad atomic.Int64
	sem := make(chan struct{}, senders)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // pacing the schedule, not waiting for an event
		}
		sem <- struct{}{}
		seq := base + i
		wg.Go(func() {
			defer func() { <-sem }()
			now := time.Now().UnixNano()
			head := benchMarker + strconv.Itoa(seq) + " " + strconv.FormatInt(now, 10) + " "
			body := head + strings.Repeat("x", max(0, payload-len(head)))
			if err := tgt.publish(ctx, body); err != nil {
				bad.Add(1)
				return
			}
			sendAt[seq] = now
			ok.Add(1)
		})
	}
	wg.Wait()
	return int(ok.Load()), int(bad.Load())
}

// drain waits until recv reaches want, or nothing more arrived for 5 s
// (those are lost), or 2 minutes passed.
func drain(recv *atomic.Int64, want int64) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last, lastAt, deadline := recv.Load(), time.Now(), time.Now().Add(2*time.Minute)
	for now := range tick.C {
		n := recv.Load()
		switch {
		case n >= want || now.After(deadline):
			return
		case n != last:
			last, lastAt = n, now
		case now.Sub(lastAt) > 5*time.Second:
			return
		}
	}
}

// tally sums what the clients recorded of the round's seqs.
func (r *roundResult) tally(clients []*fanoutClient, sendAt []int64, base int) {
	var lats []int32
	var first, last, lastSent int64 = math.MaxInt64, 0, 0
	for _, at := range sendAt {
		if at != 0 {
			first, lastSent = min(first, at), max(lastSent, at)
		}
	}
	if lastSent > first {
		r.SentPerSec = float64(r.Sent-1) / (float64(lastSent-first) / 1e9)
	}
	for _, c := range clients {
		for i, at := range sendAt {
			n := c.counts[base+i]
			if n == 0 || at == 0 {
				continue
			}
			r.Delivered++
			r.Dups += int64(n - 1)
			l := c.lat[base+i]
			lats = append(lats, l)
			last = max(last, at+int64(l)*1000)
		}
	}
	r.Lost = r.Expected - r.Delivered
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	q := func(p float64) time.Duration {
		return time.Duration(lats[min(len(lats)-1, int(p*float64(len(lats))))]) * time.Microsecond
	}
	r.P50, r.P99, r.Max = q(0.50), q(0.99), time.Duration(lats[len(lats)-1])*time.Microsecond
	if last > first {
		r.PerSec = float64(r.Delivered) / (float64(last-first) / 1e9)
	}
}

// benchMarker starts every bench message body.
const benchMarker = "cc-bench "

// fanoutClient is one subscribed socket; only its reader goroutine writes
// (pongs) once it runs.
type fanoutClient struct {
	conn   *websocket.Conn
	counts []uint8 // receipts of each seq (saturating)
	lat    []int32 // µs from send to the first receipt
	recv   *atomic.Int64
}

var (
	bodyKey  = []byte(`"body":"` + benchMarker)
	pingType = []byte(`"type":"ping"`)
	pongMsg  = []byte(`{"type":"pong"}`)
)

func (c *fanoutClient) read(ready *sync.WaitGroup) {
	isReady := false
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			if !isReady {
				ready.Done()
			}
			return
		}
		now := time.Now().UnixNano()
		i := bytes.Index(b, bodyKey)
		if i < 0 {
			if bytes.Contains(b, pingType) {
				_ = c.conn.WriteMessage(websocket.TextMessage, pongMsg)
			}
			continue
		}
		rest := b[i+len(bodyKey):]
		if bytes.HasPrefix(rest, []byte("ready")) {
			if !isReady {
				isReady = true
				ready.Done()
			}
			continue
		}
		f := bytes.SplitN(rest, []byte(" "), 3)
		if len(f) < 3 {
			continue
		}
		seq, err1 := strconv.Atoi(string(f[0]))
		at, err2 := strconv.ParseInt(string(f[1]), 10, 64)
		if err1 != nil || err2 != nil || seq < 0 || seq >= len(c.counts) {
			continue
		}
		if c.counts[seq] < math.MaxUint8 {
			c.counts[seq]++
		}
		if c.counts[seq] == 1 {
			c.lat[seq] = int32(min((now-at)/1000, math.MaxInt32))
			c.recv.Add(1)
		}
	}
}

func waitGroupWithin(wg *sync.WaitGroup, d time.Duration) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("not within %v", d)
	}
}

// readRSS is VmRSS of a process, in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// child runs exe with args and env, stopping it (SIGTERM, then SIGKILL
// after 10 s) when ctx ends or stop is called.
type child struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
}

// startChild starts exe; the caller reads both pipes to their end.
func startChild(ctx context.Context, exe string, args, env []string) (c *child, stdout, stderr io.ReadCloser, err error) {
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if stdout, err = cmd.StdoutPipe(); err == nil {
		stderr, err = cmd.StderrPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return &child{cmd: cmd, cancel: cancel}, stdout, stderr, nil
}

func (c *child) stop() {
	c.cancel()
	c.cmd.Wait()
}

// awaitLine reads r until a line holding want, returned; the rest of r is
// then copied to w, in the background.
func awaitLine(r io.Reader, want string, w io.Writer) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, want) {
			go func() {
				for sc.Scan() {
					if w != nil {
						fmt.Fprintln(w, sc.Text())
					}
				}
				io.Copy(io.Discard, r)
			}()
			return line, nil
		}
		if seen = append(seen, line); len(seen) > 20 {
			seen = seen[1:]
		}
	}
	return "", fmt.Errorf("child ended before %q: %s", want, strings.Join(seen, "\n"))
}

// platformTarget is a serve child: embedded store, in-process bus, no
// worker, limits lifted for one publisher and many sockets.
type platformTarget struct {
	users     int
	profiled  bool // serve a pprof listener (its fine heap sampling costs CPU)
	child     *child
	dir       string
	url       string // the /graphql endpoint
	pprofAddr string
	client    *http.Client
	tokens    []string
	sessionID string
	after     string // a message before every subscription: they start after it
}

func (p *platformTarget) name() string { return "platform" }

func (p *platformTarget) start(ctx context.Context, exe string, log io.Writer) (int, error) {
	var err error
	if p.dir, err = os.MkdirTemp("", "codecrafter-bench-"); err != nil {
		return 0, err
	}
	env := []string{
		"CODECRAFTER_ADDR=127.0.0.1:0", "CODECRAFTER_DATA_DIR=" + p.dir, "CODECRAFTER_WORKER=off",
		"MONGO_URI=", "REDIS_URL=", "AMQP_URL=", "CODECRAFTER_METRICS_ADDR=", "CODECRAFTER_ENV=development",
		"CODECRAFTER_LOG_FORMAT=json", "CODECRAFTER_LOG_LEVEL=info",
		"CODECRAFTER_CHAT_PER_MINUTE=100000000", "CODECRAFTER_WS_CONNECTS_PER_MINUTE=100000000",
		"CODECRAFTER_REGISTER_MAX_PER_ADDR=100000000",
		// Cheap password hashes: the bench registers hundreds of users.
		"CODECRAFTER_ARGON2_MEMORY_KIB=8", "CODECRAFTER_ARGON2_PASSES=1",
	}
	if p.profiled {
		if p.pprofAddr, err = freeAddr(); err != nil {
			return 0, err
		}
		env = append(env, "CODECRAFTER_PPROF_ADDR="+p.pprofAddr)
	}
	c, stdout, stderr, err := startChild(ctx, exe, []string{"serve"}, env)
	if err != nil {
		return 0, err
	}
	p.child = c
	go io.Copy(io.Discard, stdout)
	line, err := awaitLine(stderr, `"msg":"serving"`, errorLines{log})
	if err != nil {
		return 0, err
	}
	var l struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &l); err != nil || l.Addr == "" {
		return 0, fmt.Errorf("serving line %q: %v", line, err)
	}
	p.url = l.Addr + "/graphql"
	p.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	return c.cmd.Process.Pid, nil
}

// errorLines passes on the child's log lines of level WARN and above.
type errorLines struct{ w io.Writer }

func (e errorLines) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(`"level":"ERROR"`)) || bytes.Contains(b, []byte(`"level":"WARN"`)) {
		return e.w.Write(b)
	}
	return len(b), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (p *platformTarget) stop() {
	if p.child != nil {
		p.child.stop()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// gql posts one operation and decodes its data into out.
func (p *platformTarget) gql(ctx context.Context, token, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %v", resp.Status, err)
	}
	if len(r.Errors) > 0 && string(r.Errors) != "null" {
		return fmt.Errorf("graphql: %s", r.Errors)
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

// prepare registers the users; the first creates the session, the others
// join it, and a first message is sent for subscriptions to start after.
func (p *platformTarget) prepare(ctx context.Context) error {
	p.tokens = make([]string, p.users)
	err := parallel(8, p.users, func(i int) error {
		var out struct{ Register struct{ AccessToken string } }
		err := p.gql(ctx, "", `mutation($in: RegisterInput!) { register(input: $in) { accessToken } }`,
			map[string]any{"in": map[string]any{"email": fmt.Sprintf("bench%d@example.com", i), "password": "bench password", "name": fmt.Sprint("bench", i)}}, &out)
		p.tokens[i] = out.Register.AccessToken
		return err
	})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	var s struct {
		CreateSession struct{ ID, InviteCode string }
	}
	if err := p.gql(ctx, p.tokens[0], `mutation($in: CreateSessionInput!) { createSession(input: $in) { id inviteCode } }`,
		map[string]any{"in": map[string]any{"title": "bench", "language": "python"}}, &s); err != nil {
		return fmt.Errorf("createSession: %w", err)
	}
	p.sessionID = s.CreateSession.ID
	if err := parallel(8, p.users-1, func(i int) error {
		return p.gql(ctx, p.tokens[i+1], `mutation($c: String!) { joinSession(inviteCode: $c) { id } }`, map[string]any{"c": s.CreateSession.InviteCode}, nil)
	}); err != nil {
		return fmt.Errorf("joinSession: %w", err)
	}
	// Subscriptions start after "start", so that each first gets "live"
	// from the store: dial waits for it, which paces the subscriptions
	// (16 setting up at a time, as clients that each wait for theirs).
	for _, body := range []string{"start", "live"} {
		var m struct{ SendMessage struct{ ID string } }
		if err := p.gql(ctx, p.tokens[0], benchSendQ, map[string]any{"s": p.sessionID, "b": body}, &m); err != nil {
			return fmt.Errorf("sendMessage: %w", err)
		}
		if body == "start" {
			p.after = m.SendMessage.ID
		}
	}
	return nil
}

const benchSendQ = `mutation($s: ID!, $b: String!) { sendMessage(sessionId: $s, body: $b) { id } }`

// parallel runs f(0..n-1), at most k at once; the first error wins.
func parallel(k, n int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, k)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				first = cmpErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// dial opens socket i as user i mod users, over graphql-transport-ws,
// subscribed to messageAdded after the first message.
// dialGraphQL opens a graphql-transport-ws socket to the server at url
// (http://...) and initialises it with token.
func dialGraphQL(ctx context.Context, url, token string) (*websocket.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 30 * time.Second}
	conn, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		return nil, err
	}
	init := map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}}
	if err := conn.WriteJSON(init); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		conn.Close()
		return nil, fmt.Errorf("connection_init: %q %v", ack.Type, err)
	}
	conn.SetReadDeadline(time.Time{})
	return conn, nil
}

func (p *platformTarget) dial(ctx context.Context, i int) (*websocket.Conn, error) {
	conn, err := dialGraphQL(ctx, p.url, p.tokens[i%p.users])
	if err != nil {
		return nil, err
	}
	sub := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($s: ID!, $a: ID) { messageAdded(sessionId: $s, after: $a) { id body } }`,
		"variables": map[string]any{"s": p.sessionID, "a": p.after},
	}}
	if err := conn.WriteJSON(sub); err != nil {
		conn.Close()
		return nil, err
	}
	// The subscription is live once "live" comes (from the store).
	conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	defer conn.SetReadDeadline(time.Time{})
	for {
		var m struct {
			Type    string
			Payload json.RawMessage
		}
		if err := conn.ReadJSON(&m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		switch m.Type {
		case "next":
			return conn, nil
		case "error", "complete":
			conn.Close()
			return nil, fmt.Errorf("subscribe: %s %s", m.Type, m.Payload)
		case "ping":
			_ = conn.WriteMessage(websocket.TextMessage, pongMsg)
		}
	}
}

func (p *platformTarget) publish(ctx context.Context, body string) error {
	return p.gql(ctx, p.tokens[0], benchSendQ, map[string]any{"s": p.sessionID, "b": body}, nil)
}

// profile saves serve's heap and goroutine profiles into dir.
func (p *platformTarget) profile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for file, path := range map[string]string{
		"heap.pb.gz":      "/debug/pprof/heap?gc=1",
		"goroutine.pb.gz": "/debug/pprof/goroutine",
		"goroutine.txt":   "/debug/pprof/goroutine?debug=1",
		"heap.txt":        "/debug/pprof/heap?debug=1", // ends with runtime.MemStats
	} {
		resp, err := http.Get("http://" + p.pprofAddr + path)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cpuProfile saves a CPU profile of serve over the next d into dir.
func (p *platformTarget) cpuProfile(dir string, d time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprofAddr, max(1, int(d.Seconds()))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cpu.pb.gz"), b, 0o644)
}

// rawTarget is the baseline: a bench rawserver child.
type rawTarget struct {
	child  *child
	addr   string
	client *http.Client
}

func (r *rawTarget) name() string { return "raw" }

func (r *rawTarget) start(ctx context.Context, exe string, log io.Writer) (int, error) {
	c, stdout, stderr, err := startChild(ctx, exe, []string{"bench", "rawserver"}, nil)
	if err != nil {
		return 0, err
	}
	r.child = c
	go io.Copy(log, stderr)
	line, err := awaitLine(stdout, "listening ", nil)
	if err != nil {
		return 0, err
	}
	r.addr = strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	return c.cmd.Process.Pid, nil
}

func (r *rawTarget) prepare(context.Context) error { return nil }

// dial returns once the server holds the socket (its hello frame).
func (r *rawTarget) dial(ctx context.Context, _ int) (*websocket.Conn, error) {
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+r.addr+"/ws", nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := conn.ReadMessage(); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// publish posts the frame the platform would send for body.
func (r *rawTarget) publish(ctx context.Context, body string) error {
	frame, _ := json.Marshal(map[string]any{"id": "1", "type": "next", "payload": map[string]any{
		"data": map[string]any{"messageAdded": map[string]any{"id": "000000000000000000000000", "body": body}}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.addr+"/publish", bytes.NewReader(frame))
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errors.New(resp.Status)
	}
	return nil
}

func (r *rawTarget) profile(string) error                   { return nil }
func (r *rawTarget) cpuProfile(string, time.Duration) error { return nil }

func (r *rawTarget) stop() {
	if r.child != nil {
		r.child.stop()
	}
}

// rawServer is the baseline broadcast: every POSTed /publish body goes to
// every socket on /ws, through one writer goroutine per socket with a
// buffered channel (a socket whose buffer is full misses the frame).
func rawServer(ctx context.Context, stdout io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	socks := map[chan []byte]struct{}{}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ch := make(chan []byte, 256)
		mu.Lock()
		socks[ch] = struct{}{}
		mu.Unlock()
		go func() {
			for b := range ch {
				if conn.WriteMessage(websocket.TextMessage, b) != nil {
					break
				}
			}
			conn.Close()
		}()
		ch <- []byte("hello")
		for { // reading handles control frames and notices the close
			if _, _, err := conn.NextReader(); err != nil {
				break
			}
		}
		mu.Lock()
		delete(socks, ch)
		mu.Unlock()
		close(ch)
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mu.Lock()
		for ch := range socks {
			select {
			case ch <- b:
			default:
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Fprintln(stdout, "listening", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (res *fanoutResults) print(w io.Writer) {
	o := res.Opts
	fmt.Fprintf(w, "fan-out: %d subscribers (%d users), payload %d, %v per rate, %d senders\n\n", o.Subscribers, o.Users, o.Payload, o.Duration, o.Senders)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\trate/s\tsent\tsent/s\texpected\tdelivered\tlost\tdups\tdelivered/s\tp50\tp99\tmax\t")
	for _, t := range []*targetResult{res.Raw, res.Platform} {
		if t == nil {
			continue
		}
		for _, r := range t.Rounds {
			fmt.Fprintf(tw, "%s\t%g\t%d\t%.1f\t%d\t%d\t%d\t%d\t%.0f\t%v\t%v\t%v\t\n", t.Name, r.Rate, r.Sent, r.SentPerSec, r.Expected, r.Delivered, r.Lost, r.Dups, r.PerSec,
				r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, t := range []*targetResult{res.Raw, res.Platform} {
		if t != nil {
			fmt.Fprintf(w, "%s: RSS %.1f MiB before, %.1f MiB with %d idle subscribed sockets: %.1f KiB per socket (set up in %v)\n",
				t.Name, float64(t.RSSBefore)/(1<<20), float64(t.RSSAfter)/(1<<20), o.Subscribers, t.rssPerConn(o.Subscribers)/1024, t.SetupTime.Round(time.Millisecond))
		}
	}
	if res.Raw != nil && res.Platform != nil {
		for i, p := range res.Platform.Rounds {
			if i >= len(res.Raw.Rounds) {
				break
			}
			r := res.Raw.Rounds[i]
			fmt.Fprintf(w, "rate %g: platform/raw delivered/s %.2f, p99 %.2f\n", p.Rate, p.PerSec/r.PerSec, float64(p.P99)/float64(r.P99))
		}
	}
}
