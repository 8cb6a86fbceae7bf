package mongo_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/ferret"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// go test -run '^$' -bench . ./mongo/

func BenchmarkStartAndOpen(b *testing.B) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	for b.Loop() {
		e, err := ferret.Start(ctx, b.TempDir(), logger)
		if err != nil {
			b.Fatal(err)
		}
		db, err := mongo.Open(ctx, e.URI(), "bench", logger)
		if err != nil {
			b.Fatal(err)
		}
		db.Close(ctx)
		e.Close()
	}
}

func BenchmarkCreateUser(b *testing.B) {
	ctx := context.Background()
	db := mongotest.New(b)
	for b.Loop() {
		id := codecrafter.NewID()
		u := &codecrafter.User{ID: id, Email: id + "@example.com", Name: "Bench", PasswordHash: "x", CreatedAt: time.Now()}
		if err := db.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrites measures the writes that keep the lookups up to date:
// creating a session, a user joining it, and one run's life (create,
// claim, finish) in a session.
func BenchmarkWrites(b *testing.B) {
	ctx := context.Background()
	db := mongotest.New(b)
	t0 := time.Now().UTC()
	newSession := func() *codecrafter.Session {
		s := &codecrafter.Session{
			ID: codecrafter.NewID(), Title: "t", Language: "python", Code: "print(1)", OwnerID: "u1",
			InviteCode: codecrafter.RandomToken(12), CreatedAt: t0, UpdatedAt: t0,
			Participants: []codecrafter.Participant{{UserID: "u1", Role: codecrafter.RoleOwner, JoinedAt: t0}},
		}
		if err := db.CreateSession(ctx, s); err != nil {
			b.Fatal(err)
		}
		return s
	}
	b.Run("CreateSession", func(b *testing.B) {
		for b.Loop() {
			newSession()
		}
	})
	b.Run("JoinSession", func(b *testing.B) {
		s := newSession()
		for b.Loop() {
			_, err := db.UpdateSession(ctx, s.ID, func(s *codecrafter.Session) error {
				s.Participants = append(s.Participants, codecrafter.Participant{UserID: codecrafter.NewID(), Role: codecrafter.RoleEditor, JoinedAt: t0})
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RunLifecycle", func(b *testing.B) {
		for b.Loop() {
			e := &codecrafter.Execution{
				ID: codecrafter.NewID(), SessionID: "s1", Code: "print(1)", Status: codecrafter.StatusQueued, CreatedAt: time.Now(),
				Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
			}
			if err := db.CreateExecution(ctx, e); err != nil {
				b.Fatal(err)
			}
			if _, err := db.ClaimExecution(ctx, e.ID, "w", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
				b.Fatal(err)
			}
			r := codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: time.Now()}
			if _, err := db.FinishExecution(ctx, e.ID, 1, r, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendOutput appends 100-byte chunks to a running execution
// that has n chunks already, among 200 others: FerretDB decodes and
// rewrites the whole document on each update.
func BenchmarkAppendOutput(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("chunks=", n), func(b *testing.B) { benchmarkAppendOutput(b, n) })
	}
}

func benchmarkAppendOutput(b *testing.B, n int) {
	ctx := context.Background()
	db := mongotest.New(b)
	newExec := func() *codecrafter.Execution {
		e := &codecrafter.Execution{
			ID: codecrafter.NewID(), SessionID: "s", Language: "python", Code: "print(1)",
			Status: codecrafter.StatusQueued, CreatedAt: time.Now(),
			Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
		}
		if err := db.CreateExecution(ctx, e); err != nil {
			b.Fatal(err)
		}
		return e
	}
	for range 200 {
		newExec()
	}
	e := newExec()
	if _, err := db.ClaimExecution(ctx, e.ID, "w", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
		b.Fatal(err)
	}
	data := strings.Repeat("x", 100)
	seq := 3
	appendOne := func() {
		c := codecrafter.OutputChunk{Seq: seq, Stream: codecrafter.Stdout, Data: data, Status: codecrafter.StatusRunning}
		if err := db.AppendOutput(ctx, e.ID, 1, c); err != nil {
			b.Fatal(err)
		}
		seq++
	}
	for range n {
		appendOne()
	}
	b.ResetTimer()
	for range b.N {
		appendOne()
	}
}

// BenchmarkScans measures the hot reads at n documents of each kind: n
// users; n sessions, 10 per owner; n executions of 10 chunks each in 100
// sessions, of which 10 are running (started an hour ago), 10 queued and
// the rest finished. On FerretDB only an _id filter is pushed down to
// SQLite, so each read must be a few _id lookups to stay flat as n grows.
func BenchmarkScans(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint("n=", n), func(b *testing.B) { benchmarkScans(b, n) })
	}
}

func benchmarkScans(b *testing.B, n int) {
	ctx := context.Background()
	db := mongotest.New(b)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	users := make([]string, n)
	var code string
	for i := range n {
		users[i] = codecrafter.NewID()
		if err := db.CreateUser(ctx, &codecrafter.User{ID: users[i], Email: users[i] + "@example.com", CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		owner := users[i%(n/10)]
		s := &codecrafter.Session{
			ID: codecrafter.NewID(), Title: "t", Language: "python", Code: strings.Repeat("x", 500),
			OwnerID: owner, InviteCode: codecrafter.RandomToken(12),
			Participants: []codecrafter.Participant{{UserID: owner, Role: codecrafter.RoleOwner, JoinedAt: t0}},
			CreatedAt:    t0.Add(time.Duration(i) * time.Millisecond), UpdatedAt: t0,
		}
		if err := db.CreateSession(ctx, s); err != nil {
			b.Fatal(err)
		}
		code = s.InviteCode
	}
	for i := range n {
		e := &codecrafter.Execution{
			ID: codecrafter.NewID(), SessionID: fmt.Sprint("s", i%100), Code: strings.Repeat("x", 200),
			Status: codecrafter.StatusSucceeded, CreatedAt: t0.Add(time.Duration(i) * time.Millisecond),
		}
		switch {
		case i < 20:
			e.Status = codecrafter.StatusQueued
			e.Output = []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}}
		default:
			for seq := 1; seq <= 10; seq++ {
				e.Output = append(e.Output, codecrafter.OutputChunk{Seq: seq, Stream: codecrafter.Stdout, Data: strings.Repeat("y", 100), Status: codecrafter.StatusRunning})
			}
		}
		if err := db.CreateExecution(ctx, e); err != nil {
			b.Fatal(err)
		}
		if i < 10 {
			if _, err := db.ClaimExecution(ctx, e.ID, "w", t0.Add(-time.Hour), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
				b.Fatal(err)
			}
		}
	}

	run := func(name string, want int, read func() (int, error)) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				got, err := read()
				if err != nil {
					b.Fatal(err)
				}
				if got != want {
					b.Fatalf("got %d results, want %d", got, want)
				}
			}
		})
	}
	run("UserByEmail", 1, func() (int, error) {
		_, err := db.UserByEmail(ctx, users[n/2]+"@example.com")
		return 1, err
	})
	run("UserByEmailMiss", 0, func() (int, error) {
		if _, err := db.UserByEmail(ctx, "nobody@example.com"); codecrafter.ErrorCode(err) != codecrafter.ENOTFOUND {
			return 0, fmt.Errorf("UserByEmail(nobody): %v", err)
		}
		return 0, nil
	})
	run("SessionByInviteCode", 1, func() (int, error) {
		_, err := db.SessionByInviteCode(ctx, code)
		return 1, err
	})
	run("SessionsForUser", 10, func() (int, error) {
		list, err := db.SessionsForUser(ctx, users[3])
		return len(list), err
	})
	run("ListExecutions", min(n/100, 20), func() (int, error) { // s7 has n/100 runs
		list, err := db.ListExecutions(ctx, "s7", 20)
		return len(list), err
	})
	run("StuckExecutions", 10, func() (int, error) {
		list, err := db.StuckExecutions(ctx, t0.Add(-time.Minute))
		return len(list), err
	})
	run("PendingExecutions", 20, func() (int, error) {
		list, err := db.PendingExecutions(ctx)
		return len(list), err
	})
}

// BenchmarkAppendMessage appends 100-character chat messages to one
// session, one at a time (sendMessage's store cost), and with 8 at once.
func BenchmarkAppendMessage(b *testing.B) {
	ctx := context.Background()
	db := mongotest.New(b)
	body := strings.Repeat("x", 100)
	b.Run("serial", func(b *testing.B) {
		sid := codecrafter.NewID()
		for b.Loop() {
			if err := db.AppendMessage(ctx, &codecrafter.Message{SessionID: sid, UserID: "u1", Body: body, CreatedAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel=8", func(b *testing.B) {
		sid := codecrafter.NewID()
		b.SetParallelism(4) // 8 goroutines on 2 CPUs
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := db.AppendMessage(ctx, &codecrafter.Message{SessionID: sid, UserID: "u1", Body: body, CreatedAt: time.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
