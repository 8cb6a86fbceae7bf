package sandbox

import (
	"context"
	"sync"
	"time"
)

// pool keeps started containers of one language whose ccbox waits for a
// job, so a run does not pay for container creation. Each box serves
// exactly one run. Its size follows demand (demand.go): every arrival
// wakes the filler, which starts boxes until the pool holds its target,
// several at once but no more than the runner's creation slots (the
// cores) across all pools; an idle language shrinks to its floor.
type pool struct {
	d     *Docker
	lang  *Language
	ready chan *box // capacity: the pool's maximum
	wake  chan struct{}
	now   func() time.Time

	mu       sync.Mutex
	dem      *demand
	creating int // boxes being started by the filler
	waiting  int // runs waiting in take for a box being started
}

func newPool(d *Docker, l *Language, dem *demand) *pool {
	return &pool{d: d, lang: l, ready: make(chan *box, dem.max), wake: make(chan struct{}, 1), now: d.now, dem: dem}
}

// take returns a ready box, or nil when there is none and none being
// started that this run could have sooner than one of its own. It counts
// the arrival, so the pool grows with use.
func (p *pool) take(ctx context.Context) *box {
	p.mu.Lock()
	p.dem.arrive(p.now())
	p.mu.Unlock()
	p.signal()
	select {
	case b := <-p.ready:
		p.got()
		return b
	default:
	}
	p.mu.Lock()
	wait := p.creating > p.waiting // one is on its way and nobody waits for it
	if wait {
		p.waiting++
	}
	p.mu.Unlock()
	if !wait {
		return nil
	}
	defer func() {
		p.mu.Lock()
		p.waiting--
		p.mu.Unlock()
	}()
	t := time.NewTimer(maxPoolWait)
	defer t.Stop()
	select {
	case b := <-p.ready:
		p.got()
		return b
	case <-ctx.Done():
	case <-t.C: // the engine is failing: the run's own attempt says why
	}
	return nil
}

// maxPoolWait bounds a run's wait for a box being started for it.
const maxPoolWait = 10 * time.Second

func (p *pool) got() {
	p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Dec()
	p.d.poolBoxes.Add(-1)
	p.signal()
}

func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill keeps the pool at its target until ctx ends: it starts boxes
// while the pool is short, and removes the surplus of an idle language.
// Failures (a missing image, a busy engine) back off up to a minute
// instead of spinning.
func (p *pool) fill(ctx context.Context) {
	backoff := time.Second
	failed := make(chan error, cap(p.ready))
	var wg sync.WaitGroup
	defer wg.Wait()
	recheck := time.NewTicker(5 * time.Second) // for shrinking: nothing else wakes an idle pool
	defer recheck.Stop()
	for {
		p.mu.Lock()
		target := p.dem.target(p.now())
		short := target - len(p.ready) - p.creating
		p.mu.Unlock()
		for ; short < 0; short++ {
			select {
			case b := <-p.ready:
				p.got()
				// Here, not removeLater: shrinking is rare, and the
				// filler's removals are then over when it stops.
				p.d.remove(b)
			default:
			}
		}
		for ; short > 0 && p.reserve(); short-- {
			wg.Go(func() {
				err := p.startOne(ctx)
				p.mu.Lock()
				p.creating--
				p.mu.Unlock()
				if err != nil {
					select {
					case failed <- err:
					default: // one waiting is enough to back off
					}
				}
				p.signal()
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-recheck.C:
		case err := <-failed:
			if ctx.Err() != nil {
				return
			}
			p.d.log.Warn("sandbox: warm pool", "language", p.lang.ID, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// reserve counts a box about to be started against the memory budget;
// the floor the operator set is kept whatever the budget.
func (p *pool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready)+p.creating < p.dem.floor {
		p.d.poolBoxes.Add(1)
	} else if !p.d.reserveBox() {
		return false
	}
	p.creating++
	return true
}

// startOne starts a box into the pool, within a creation slot; the
// caller reserved its place in the memory budget.
func (p *pool) startOne(ctx context.Context) error {
	if err := p.d.createSlot(ctx); err != nil {
		p.d.poolBoxes.Add(-1)
		return err
	}
	began := time.Now()
	b, err := p.d.startBox(ctx, p.lang, p.d.cfg.DefaultMemoryMB)
	p.d.releaseSlot()
	if err != nil {
		p.d.poolBoxes.Add(-1)
		return err
	}
	p.mu.Lock()
	p.dem.started(time.Since(began))
	p.mu.Unlock()
	select {
	case p.ready <- b:
		p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Inc()
	default: // cannot happen: ready+creating never pass the capacity
		p.d.poolBoxes.Add(-1)
		p.d.removeLater(b)
	}
	return nil
}

// drain removes every ready box; the filler must have stopped.
func (p *pool) drain() {
	for {
		select {
		case b := <-p.ready:
			p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Dec()
			p.d.poolBoxes.Add(-1)
			p.d.remove(b)
		default:
			return
		}
	}
}
