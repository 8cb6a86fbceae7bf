package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// BenchmarkEditThroughput: clients editing one session at once through the
// real server (HTTP editCode), each waiting for its own answer and basing
// its next edit on the revision it got, so most edits are transformed over
// others'. b.N edits in all, on the embedded store with the in-process bus
// and with the Redis bus; flat out (8 and 32 clients), paced at 200
// edits/s in all (8 clients), and flat out on a 32 KiB document. Reports edits/s and p50/p99 per edit, and
// converged (1) once the document is checked: every insert landed once;
// and the process's CPU time per edit.
//
//	go test -run '^$' -bench EditThroughput -benchtime 2000x ./cmd/codecrafter
func BenchmarkEditThroughput(b *testing.B) {
	for _, bus := range []string{"embedded", "redis"} {
		for _, c := range []struct {
			clients int
			rate    float64 // edits/s in all; 0: as fast as the answers come
			code    int     // code points of the initial code
		}{{8, 0, 8}, {32, 0, 8}, {8, 200, 8}, {8, 0, 32 << 10}} {
			name := fmt.Sprintf("%s/clients=%d", bus, c.clients)
			if c.rate > 0 {
				name += fmt.Sprintf("/rate=%g", c.rate)
			}
			if c.code > 8 {
				name += fmt.Sprintf("/code=%dKiB", c.code>>10)
			}
			b.Run(name, func(b *testing.B) {
				var opts []func(*config)
				if bus == "redis" {
					url := testenv.RedisURL(b)
					opts = append(opts, func(cfg *config) {
						cfg.RedisURL, cfg.RedisPrefix = url, "cmdbench:"+codecrafter.RandomToken(6)+":"
					})
				}
				benchEdits(b, startApp(b, opts...), c.clients, c.rate, c.code)
			})
		}
	}
}

// benchAckQ is the answer an editor needs: the revision its edit got and
// the edit as applied (the client is the author; author { id } would cost
// a user lookup per answer).
const benchAckQ = `mutation($s: ID!, $in: EditInput!) { editCode(sessionId: $s, input: $in) { revision ops { retain insert delete } } }`

func benchEdits(b *testing.B, ta *testApp, clients int, rate float64, initial int) {
	u := ta.register(b, "ada")
	var created struct{ CreateSession sessionOut }
	u.Do(b, createQ, map[string]any{"in": map[string]any{"title": "hot", "language": "python", "code": strings.Repeat("#", initial)}}, &created)
	s := created.CreateSession
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		n := b.N / clients
		if c < b.N%clients {
			n++
		}
		wg.Go(func() {
			base := 0
			for i := range n {
				if rate > 0 { // client c's i-th edit is due at its slot of the whole rate
					due := start.Add(time.Duration(float64(i*clients+c) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				t0 := time.Now()
				var out struct{ EditCode struct{ Revision int } }
				// The document at base has initial+base code points: every edit inserts one.
				u.Do(b, benchAckQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": base,
					"ops": []map[string]any{{"insert": "x"}, {"retain": initial + base}}}}, &out)
				d := time.Since(t0)
				base = out.EditCode.Revision
				mu.Lock()
				lats = append(lats, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	var got struct {
		Session struct {
			Code     string
			Revision int
		}
	}
	u.Do(b, `query($s: ID!) { session(id: $s) { code revision } }`, map[string]any{"s": s.ID}, &got)
	if got.Session.Revision != b.N || utf8.RuneCountInString(got.Session.Code) != initial+b.N {
		b.Fatalf("not converged: revision %d, %d code points; want %d, %d", got.Session.Revision, utf8.RuneCountInString(got.Session.Code), b.N, initial+b.N)
	}
	slices.Sort(lats)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "edits/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	// The process's CPU time (server and clients) per edit: what bounds
	// the rate on an idle machine, less disturbed by others' load than
	// edits/s.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/edit")
	b.ReportMetric(1, "converged")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
