package resolvers

import (
	"context"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/graph/model"
	"github.com/codecrafter/codecrafter/timeline"
)

func (r *Resolver) timeline(ctx context.Context, sessionID string, after *string, limit *int) ([]*model.TimelineItem, error) {
	items, err := r.Timeline.Page(ctx, sessionID, after, intOr(limit, timeline.DefaultLimit))
	if err != nil {
		return nil, err
	}
	users := map[string]*codecrafter.User{}
	out := make([]*model.TimelineItem, len(items))
	for i, it := range items {
		if out[i], err = r.timelineItem(ctx, it, users); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *Resolver) timelineAdded(ctx context.Context, sessionID string, after *string) (<-chan *model.TimelineItem, error) {
	ctx = r.watchSession(ctx, sessionID, r.sessionReadable(sessionID))
	items, err := r.Timeline.Follow(ctx, sessionID, after)
	r.hold(ctx, sessionID, err) // online while it lasts, like the session's other subscriptions
	if err != nil {
		return nil, err
	}
	out := make(chan *model.TimelineItem)
	go func() {
		defer close(out)
		users := map[string]*codecrafter.User{}
		for it := range items {
			m, err := r.timelineItem(ctx, it, users)
			if err != nil {
				r.subscriptionError(ctx)(err)
				return
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// timelineItem maps an item, loading its user once per operation.
func (r *Resolver) timelineItem(ctx context.Context, it *timeline.Item, users map[string]*codecrafter.User) (*model.TimelineItem, error) {
	u, ok := users[it.UserID]
	if !ok {
		var err error
		if u, err = r.user(ctx, it.UserID); err != nil {
			return nil, err
		}
		users[it.UserID] = u
	}
	m := &model.TimelineItem{Cursor: it.Cursor, Kind: model.TimelineKind(it.Kind), At: it.At, User: u,
		Message: it.Message, Execution: it.Execution}
	if it.Kind == timeline.KindEdits {
		from, to, n := it.FromRevision, it.ToRevision, it.EditCount
		m.FromRevision, m.ToRevision, m.EditCount = &from, &to, &n
	}
	if it.Role != "" {
		role := it.Role
		m.Role = &role
	}
	return m, nil
}
