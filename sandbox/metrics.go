package sandbox

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	poolReady *prometheus.GaugeVec   // language
	inFlight  prometheus.Gauge       // runs holding a container
	runs      *prometheus.CounterVec // language, status
	acquired  *prometheus.CounterVec // language, source (pool|fresh)
	started   *prometheus.CounterVec // runtime
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		poolReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "codecrafter_sandbox_pool_ready",
			Help: "Started sandbox containers waiting for a run, by language.",
		}, []string{"language"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codecrafter_sandbox_containers_in_flight",
			Help: "Sandbox containers currently running a program.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_sandbox_runs_total",
			Help: "Finished sandbox runs by language and final status.",
		}, []string{"language", "status"}),
		acquired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_sandbox_containers_acquired_total",
			Help: "Containers used for runs, from the warm pool or created for the run.",
		}, []string{"language", "source"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codecrafter_sandbox_containers_started_total",
			Help: "Sandbox containers started (pooled or for a run), by OCI runtime.",
		}, []string{"runtime"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.poolReady, m.inFlight, m.runs, m.acquired, m.started} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
