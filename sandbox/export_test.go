package sandbox

// OnAcquire makes d report the container of each run (for tests).
func (d *Docker) OnAcquire(f func(containerID string)) { d.onAcquire = f }

// PoolReady returns the ids of d's ready pooled containers of a language.
func (d *Docker) PoolReady(language string) int {
	if p := d.pools[language]; p != nil {
		return len(p.ready)
	}
	return 0
}
