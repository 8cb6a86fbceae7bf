package worker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus series.
type metrics struct {
	runs       *prometheus.CounterVec   // by language, final status
	duration   *prometheus.HistogramVec // claim to final result, by language
	queueWait  *prometheus.HistogramVec // QUEUED to first claim, by language
	inFlight   prometheus.Gauge
	queueDepth *prometheus.GaugeVec // by state: ready, unacked, dead
	deferred   prometheus.Counter   // jobs put back for fairness
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.05, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60}
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_runs_total",
			Help: "Finished runs, by language and final status.",
		}, []string{"language", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codecrafter_run_duration_seconds",
			Help:    "Time from a worker's claim to the run's final result, by language.",
			Buckets: buckets,
		}, []string{"language"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codecrafter_run_queue_wait_seconds",
			Help:    "Time runs waited QUEUED before a worker first claimed them, by language.",
			Buckets: buckets,
		}, []string{"language"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codecrafter_runs_in_flight",
			Help: "Runs this worker is executing now.",
		}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "codecrafter_queue_jobs",
			Help: "Jobs in the run queue by state (ready, unacked, dead), sampled periodically.",
		}, []string{"state"}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codecrafter_runs_deferred_total",
			Help: "Jobs a worker put back at the end of the queue so that users with fewer runs running go first.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.queueWait, m.inFlight, m.queueDepth, m.deferred)
	}
	return m
}
