package realtime

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter"
)

// busKinds are the topic kinds that get their own series; others count
// as "other", so labels stay bounded.
var busKinds = []string{"chat", "typing", "presence", "execution", "session-executions", "access", "execution-cancel", "other"}

var _ codecrafter.BusObserver = (*Metrics)(nil)

// Metrics counts the event bus's traffic (as its codecrafter.BusObserver),
// chat deliveries and their latency. Its counters are resolved once per
// kind, so an event costs a map read and an atomic add.
//
// A replica follows a session's chat once for all its subscribers (a
// stream.Hub): a chat event is delivered by the bus once per replica,
// its latency is observed once (when the replica's follower hands it to
// the subscribers), and chatDelivered counts it once per subscriber.
type Metrics struct {
	published, delivered map[string]prometheus.Counter
	dropped              prometheus.Counter
	chatDelivered        prometheus.Counter
	delivery             prometheus.Histogram
}

// NewMetrics registers the realtime collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codecrafter_bus_events_published_total",
		Help: "Events this replica published on the bus, by kind (topic prefix).",
	}, []string{"kind"})
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codecrafter_bus_events_delivered_total",
		Help: "Events the bus handed to this replica's subscribers, by kind (topic prefix).",
	}, []string{"kind"})
	m := &Metrics{
		published: map[string]prometheus.Counter{},
		delivered: map[string]prometheus.Counter{},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codecrafter_bus_subscribers_dropped_total",
			Help: "Bus subscribers ended because they fell their buffer behind.",
		}),
		chatDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codecrafter_chat_messages_delivered_total",
			Help: "Chat messages handed to this replica's subscribers, once per subscriber (replayed from the store or live).",
		}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "codecrafter_bus_delivery_seconds",
			Help:    "Time from a chat message's creation to its live delivery to this replica's subscribers (once per message, not per subscriber).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	for _, k := range busKinds {
		m.published[k] = published.WithLabelValues(k)
		m.delivered[k] = delivered.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{published, delivered, m.dropped, m.chatDelivered, m.delivery} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) Published(topic string) { kindCounter(m.published, topic).Inc() }
func (m *Metrics) Delivered(topic string) { kindCounter(m.delivered, topic).Inc() }
func (m *Metrics) Dropped(string)         { m.dropped.Inc() }

func kindCounter(cs map[string]prometheus.Counter, topic string) prometheus.Counter {
	if c, ok := cs[codecrafter.BusKind(topic)]; ok {
		return c
	}
	return cs["other"]
}

// observeDelivery records a live chat message's latency; m may be nil.
func (m *Metrics) observeDelivery(d time.Duration) {
	if m != nil {
		m.delivery.Observe(max(d, 0).Seconds())
	}
}

// countDelivery counts a chat message handed to one subscriber; m may be
// nil.
func (m *Metrics) countDelivery() {
	if m != nil {
		m.chatDelivered.Inc()
	}
}
