package sandbox

import (
	"context"
	"time"
)

// pool keeps started containers of one language whose ccbox waits for a
// job, so a run does not pay for container creation. Each box serves
// exactly one run; taking one wakes the filler to start a replacement.
type pool struct {
	d     *Docker
	lang  *Language
	ready chan *box
	wake  chan struct{}
}

func newPool(d *Docker, l *Language, size int) *pool {
	return &pool{d: d, lang: l, ready: make(chan *box, size), wake: make(chan struct{}, 1)}
}

// take returns a ready box, or nil when none is ready.
func (p *pool) take() *box {
	select {
	case b := <-p.ready:
		p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Dec()
		p.signal()
		return b
	default:
		p.signal()
		return nil
	}
}

func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill keeps the pool full until ctx ends. Failures (a missing image, a
// busy engine) back off up to a minute instead of spinning.
func (p *pool) fill(ctx context.Context) {
	backoff := time.Second
	for {
		for len(p.ready) < cap(p.ready) {
			b, err := p.d.startBox(ctx, p.lang, p.d.cfg.DefaultMemoryMB)
			if err != nil {
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
			p.ready <- b // never blocks: only fill adds, and it checked the room
			p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Inc()
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
	}
}

// drain removes every ready box; the filler must have stopped.
func (p *pool) drain() {
	for {
		select {
		case b := <-p.ready:
			p.d.metrics.poolReady.WithLabelValues(p.lang.ID).Dec()
			p.d.remove(b)
		default:
			return
		}
	}
}
