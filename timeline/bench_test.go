package timeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/editing"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/realtime"
)

// BenchmarkPage reads pages of a session with 1,000 messages, 1,000
// edits (500 bursts), 100 membership events and 20 runs on the embedded
// store: from the start, and after a cursor half way.
//
//	go test -run '^$' -bench Page -benchtime 20x ./timeline/
func BenchmarkPage(b *testing.B) {
	f := benchSetup(b)
	ctx := codecrafter.WithUserID(context.Background(), "a")
	all, err := f.svc.Page(ctx, f.sid, nil, MaxLimit)
	if err != nil {
		b.Fatal(err)
	}
	mid := all[len(all)/2].Cursor
	for _, c := range []struct {
		name  string
		after *string
	}{{"start", nil}, {"middle", &mid}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if items, err := f.svc.Page(ctx, f.sid, c.after, DefaultLimit); err != nil || len(items) != DefaultLimit {
					b.Fatal(len(items), err)
				}
			}
		})
	}
}

func benchSetup(b *testing.B) *fixture {
	b.Helper()
	f := setupTB(b)
	ctx := context.Background()
	for i := range 1000 {
		at := f.at(float64(i))
		if err := f.st.AppendMessage(ctx, &codecrafter.Message{SessionID: f.sid, UserID: "b", Body: fmt.Sprint(i), CreatedAt: at}); err != nil {
			b.Fatal(err)
		}
		f.st.addEdit([]string{"a", "b"}[i/2%2], at.Add(500*time.Millisecond))
	}
	for i := range 100 {
		e := &codecrafter.MemberEvent{SessionID: f.sid, Kind: codecrafter.MemberJoined, UserID: fmt.Sprint("u", i), Role: codecrafter.RoleEditor, At: f.at(float64(i * 10))}
		if err := f.st.AppendMemberEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 20 {
		f.runTB(b, "a", f.at(float64(i*50)+0.2))
	}
	return f
}

// BenchmarkIdleFollow measures what an idle timelineAdded subscription
// holds (heap and goroutines), with the real chat and editing services on
// the in-process bus.
//
//	go test -run '^$' -bench IdleFollow -benchtime 1000x ./timeline/
func BenchmarkIdleFollow(b *testing.B) {
	f := setupTB(b)
	bus := inmem.NewBus()
	log := slog.New(slog.DiscardHandler)
	chat := realtime.New(realtime.Config{}, f.st, f.st, bus, inmem.NewPresence(bus), inmem.NewLimiter(1000, time.Minute), log)
	f.svc = New(f.st, bus, chat, editing.New(f.st, f.st, bus, log), log)
	ctx, cancel := context.WithCancel(codecrafter.WithUserID(context.Background(), "a"))
	defer cancel()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	var chans []<-chan *Item
	for b.Loop() {
		ch, err := f.svc.Follow(ctx, f.sid, nil)
		if err != nil {
			b.Fatal(err)
		}
		chans = append(chans, ch)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(len(chans)), "heap-B/sub")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(len(chans)), "goroutines/sub")
	cancel()
	for _, ch := range chans {
		for range ch {
		}
	}
}
