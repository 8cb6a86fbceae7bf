package mongo_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// go test -run '^$' -bench . ./mongo/

func BenchmarkStartAndOpen(b *testing.B) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	for b.Loop() {
		e, err := mongo.StartEmbedded(ctx, b.TempDir(), logger)
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
	if _, err := db.ClaimExecution(ctx, e.ID, "w", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}); err != nil {
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

// BenchmarkScans measures the lookups FerretDB answers by decoding the
// whole collection: n users, n executions of 10 chunks in 100 sessions.
func BenchmarkScans(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint("n=", n), func(b *testing.B) {
			ctx := context.Background()
			db := mongotest.New(b)
			for i := range n {
				id := codecrafter.NewID()
				if err := db.CreateUser(ctx, &codecrafter.User{ID: id, Email: id + "@example.com", CreatedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
				e := &codecrafter.Execution{ID: id, SessionID: fmt.Sprint("s", i%100), Code: strings.Repeat("x", 200), Status: codecrafter.StatusSucceeded, CreatedAt: time.Now()}
				for seq := 1; seq <= 10; seq++ {
					e.Output = append(e.Output, codecrafter.OutputChunk{Seq: seq, Stream: codecrafter.Stdout, Data: strings.Repeat("y", 100), Status: codecrafter.StatusRunning})
				}
				if err := db.CreateExecution(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("UserByEmail", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.UserByEmail(ctx, "nobody@example.com"); codecrafter.ErrorCode(err) != codecrafter.ENOTFOUND {
						b.Fatal(err)
					}
				}
			})
			b.Run("ListExecutions", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.ListExecutions(ctx, "s7", 20); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
