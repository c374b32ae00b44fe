package source

import (
	"context"
	"fmt"
	"log/slog"
)

// Apply does after-processing action on the server to the messages owed it
// (moveTo is the folder of a move): a source's side of Pay and RedoOwed.
type Apply func(ctx context.Context, action, moveTo string, owed []Owed) error

// Pay does action (moving to moveTo) on the messages owed it, of epoch, and
// then forgets that it is owed: l.BeforeAction first (this replica still
// holds the mailbox; what recorded the messages is durable), then apply,
// then l.Paid, only once apply succeeded. apply's error is wrapped with
// the action.
func Pay(ctx context.Context, l Ledger, epoch uint32, action, moveTo string, owed []Owed, apply Apply) error {
	if err := l.BeforeAction(ctx, action); err != nil {
		return err
	}
	if err := apply(ctx, action, moveTo, owed); err != nil {
		return fmt.Errorf("after-processing (%s): %w", action, err)
	}
	return l.Paid(ctx, epoch, owed)
}

// RedoOwed pays (see Pay) the after-processing l holds owed to epoch (0 for
// sources without epochs), one group for each action and move-to, in the
// order each was first owed. It stops at the first error: that group and
// the later ones stay owed, for the next time. log, when not nil, is told
// of each group: the redo of what a crash or a failure left undone says
// so; a source whose normal path is to pay what the ledger holds passes
// nil.
func RedoOwed(ctx context.Context, l Ledger, log *slog.Logger, epoch uint32, apply Apply) error {
	owed, err := l.Owed(ctx)
	if err != nil {
		return err
	}
	type key struct{ action, moveTo string }
	groups := map[key][]Owed{}
	var order []key
	for _, o := range owed {
		if o.Epoch != epoch {
			continue
		}
		k := key{o.Action, o.MoveTo}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o)
	}
	for _, k := range order {
		if log != nil {
			log.Info("redoing after-processing interrupted earlier", "action", k.action, "messages", len(groups[k]))
		}
		if err := Pay(ctx, l, epoch, k.action, k.moveTo, groups[k], apply); err != nil {
			return err
		}
	}
	return nil
}
