package realtime_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/realtime"
)

// TestMetrics: bus events published and delivered count by kind, chat
// messages handed to subscribers count, an ended slow subscriber counts as
// dropped, and a live chat message's delivery latency is observed.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := realtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bus := inmem.NewBusWithBuffer(1)
	bus.Observe(m)
	e := newEnvWith(t, nil, bus, nil)
	e.svc = realtime.New(realtime.Config{Metrics: m}, e.db, e.db, bus, inmem.NewPresence(bus), nil, slog.New(slog.DiscardHandler))

	ch, err := e.svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, e, 1, 1)
	expectSeqs(t, ch, 1, 1)
	value := func(name string, labels map[string]string) float64 {
		return promtest.Value(t, reg, name, labels)
	}
	chat := map[string]string{"kind": "chat"}
	if n := value("codecrafter_bus_events_published_total", chat); n != 1 {
		t.Errorf("chat events published %v, want 1", n)
	}
	if n := value("codecrafter_bus_events_delivered_total", chat); n != 1 {
		t.Errorf("chat events delivered %v, want 1", n)
	}
	if n := value("codecrafter_chat_messages_delivered_total", nil); n != 1 {
		t.Errorf("chat messages delivered %v, want 1", n)
	}
	if n := value("codecrafter_bus_events_published_total", map[string]string{"kind": "typing"}); n != 1 {
		t.Errorf("typing events published %v, want 1 (cleared on send)", n)
	}

	// A subscriber that never reads is ended once its buffer is full.
	if _, err := bus.Subscribe(t.Context(), "other-kind:x"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := bus.Publish(t.Context(), "other-kind:x", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n := value("codecrafter_bus_subscribers_dropped_total", nil); n != 1 {
		t.Errorf("subscribers dropped %v, want 1", n)
	}
	if n := value("codecrafter_bus_events_published_total", map[string]string{"kind": "other"}); n != 2 {
		t.Errorf("other events published %v, want 2", n)
	}

	// A message delivered from its live event has its latency observed;
	// one the follower read from the store (its start raced the send) has
	// not. Messages sent once the follower is live come live.
	for seq := 2; value("codecrafter_bus_delivery_seconds", nil) < 1; seq++ {
		if seq > 10 {
			t.Fatal("no delivery latency observed for 9 live messages")
		}
		sendN(t, e, seq, seq)
		expectSeqs(t, ch, seq, seq)
	}
}
