package sandbox

import (
	"math"
	"time"
)

// Pool sizing: how many ready boxes a language's pool should hold, from
// its recent arrivals. It is pure (the caller passes the time), so its
// rules are tested with a fake clock.
const (
	// rateWindow is the time constant of the arrival rate: arrivals count
	// with weight e^(-age/rateWindow).
	rateWindow = 10 * time.Second
	// burstWindow groups arrivals into a burst: those within about this
	// long of each other (a class pressing Run at once, a worker's batch).
	burstWindow = time.Second
	// burstHalfLife is how fast the memory of the largest burst fades, so
	// a pool sized for a burst shrinks back within minutes of quiet.
	burstHalfLife = 2 * time.Minute
	// defaultStartTime is the box start time assumed before one is seen.
	defaultStartTime = 300 * time.Millisecond
)

// demand follows one language's arrivals.
type demand struct {
	floor int           // never fewer (Config.Pool)
	max   int           // never more (Config.PoolMax)
	idle  time.Duration // no arrival this long: back to the floor

	at    time.Time // when rate, burst and peak were last decayed
	rate  float64   // decayed arrivals over rateWindow
	burst float64   // decayed arrivals over burstWindow
	peak  float64   // the largest burst, decayed by burstHalfLife
	last  time.Time // the last arrival (zero: none yet)
	start time.Duration
}

func newDemand(floor, max int, idle time.Duration) *demand {
	return &demand{floor: floor, max: max, idle: idle, start: defaultStartTime}
}

func (d *demand) decay(now time.Time) {
	if d.at.IsZero() {
		d.at = now
		return
	}
	dt := now.Sub(d.at)
	if dt <= 0 {
		return
	}
	d.rate *= math.Exp(-dt.Seconds() / rateWindow.Seconds())
	d.burst *= math.Exp(-dt.Seconds() / burstWindow.Seconds())
	d.peak *= math.Exp2(-dt.Seconds() / burstHalfLife.Seconds())
	d.at = now
}

// arrive counts a run asking for a box at now.
func (d *demand) arrive(now time.Time) {
	d.decay(now)
	d.rate++
	d.burst++
	d.peak = max(d.peak, d.burst)
	d.last = now
}

// started records how long a box took to start (a moving average).
func (d *demand) started(took time.Duration) {
	d.start = (3*d.start + took) / 4
}

// target is how many ready boxes the pool should hold at now: enough for
// the runs that arrive while one box starts at the recent rate, twice
// over (Little's law with headroom), or for the largest recent burst,
// whichever is more; at least one while the language is in use; the
// floor once nobody has used it for idle.
func (d *demand) target(now time.Time) int {
	if d.last.IsZero() || now.Sub(d.last) >= d.idle {
		return min(d.floor, d.max)
	}
	d.decay(now)
	perSecond := d.rate / rateWindow.Seconds()
	steady := int(math.Ceil(2 * perSecond * d.start.Seconds()))
	burst := int(math.Round(d.peak))
	return min(max(d.floor, 1, steady, burst), d.max)
}
