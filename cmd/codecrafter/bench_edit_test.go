package main

import (
	"slices"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// BenchmarkEditThroughput: clients editing one session at once through the
// real server (HTTP editCode on the embedded store), each waiting for its
// own answer and basing its next edit on the revision it got, so most
// edits are transformed over others'. b.N edits in all. Reports edits/s
// and p50/p99 per edit, and checks the document converged (every insert
// landed once).
//
//	go test -run '^$' -bench EditThroughput -benchtime 2000x ./cmd/codecrafter
func BenchmarkEditThroughput(b *testing.B) {
	const clients = 8
	ta := startApp(b)
	u := ta.register(b, "ada")
	s := createSession(b, u, "hot") // "print(1)": 8 code points
	const initial = 8
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		n := b.N / clients
		if c < b.N%clients {
			n++
		}
		wg.Go(func() {
			base := 0
			for range n {
				t0 := time.Now()
				var out struct{ EditCode struct{ Revision int } }
				// The document at base has initial+base code points: every edit inserts one.
				u.Do(b, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": base,
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
	b.ReportMetric(0, "ns/op")
}
