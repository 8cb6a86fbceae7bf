package sandbox

import "context"

// OnAcquire makes d report the container of each run (for tests).
func (d *Docker) OnAcquire(f func(containerID string)) { d.onAcquire = f }

// PoolReady returns the ids of d's ready pooled containers of a language.
func (d *Docker) PoolReady(language string) int {
	if p := d.pools[language]; p != nil {
		return len(p.ready)
	}
	return 0
}

// WaitRemovals waits for d's pending background removals of used
// containers.
func (d *Docker) WaitRemovals() { d.removals.Wait() }

// UseOOMReport sets whether d may take a clean exit's OOM kill count from
// ccbox instead of waiting for the container's final state.
func (d *Docker) UseOOMReport(use bool) { d.kernelMemcg = use }

// Owner returns the LabelOwner value of d's containers.
func (d *Docker) Owner() string { return d.owner.String() }

// OOMLogged reports whether the engine logged an OOM event for a
// container since it started.
func (d *Docker) OOMLogged(ctx context.Context, id, since string) bool {
	return d.oomLogged(ctx, id, since)
}
