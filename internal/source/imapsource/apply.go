package imapsource

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	"mailtrigger/internal/imapconf"
)

// applyBatch is how many UIDs one after-processing command names.
const applyBatch = 500

// Apply does the after-processing action (imapconf.AfterNone, AfterSeen,
// AfterDelete or AfterMove) to the messages uids of the selected folder, and
// to no other message. The caller calls it only once the messages are
// durably recorded, and again after a crash came in between: doing it again
// is harmless, and a UID that no longer exists is not an error.
//
//   - seen: UID STORE +FLAGS.SILENT (\Seen).
//   - delete: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE of those
//     UIDs where the server has UIDPLUS. Without UIDPLUS the messages stay
//     flagged \Deleted: a plain EXPUNGE would also remove the messages other
//     clients flagged.
//   - move: UID MOVE to moveTo where the server has MOVE, else UID COPY,
//     STORE \Deleted and UID EXPUNGE where it has UIDPLUS, else an error
//     matching ErrCannotMove. A missing moveTo folder is created. (Without
//     MOVE a crash between COPY and EXPUNGE leaves a copy behind that the
//     redo copies again.)
func (c *Conn) Apply(ctx context.Context, action, moveTo string, uids []uint32) error {
	uids = slices.Clone(uids)
	uids = slices.DeleteFunc(uids, func(uid uint32) bool { return uid == 0 })
	slices.Sort(uids)
	uids = slices.Compact(uids)
	switch action {
	case imapconf.AfterNone, "":
		return nil
	case imapconf.AfterSeen, imapconf.AfterDelete:
	case imapconf.AfterMove:
		if moveTo == "" {
			return &StepError{Step: StepApply, Err: errors.New("move: no folder to move to")}
		}
		if !c.caps.Has(imap.CapMove) && !c.caps.Has(imap.CapUIDPlus) {
			return &StepError{Step: StepApply, Err: ErrCannotMove}
		}
	default:
		return &StepError{Step: StepApply, Err: fmt.Errorf("unknown action %q", action)}
	}
	for batch := range slices.Chunk(uids, applyBatch) {
		set := uidSet(batch)
		var err error
		switch action {
		case imapconf.AfterSeen:
			err = c.addFlag(ctx, set, imap.FlagSeen)
		case imapconf.AfterDelete:
			err = c.delete(ctx, set)
		case imapconf.AfterMove:
			err = c.move(ctx, set, moveTo)
		}
		if err != nil {
			return err
		}
	}
	c.log.Debug("imap applied", "action", action, "messages", len(uids))
	return nil
}

func (c *Conn) addFlag(ctx context.Context, set imap.UIDSet, flag imap.Flag) error {
	return c.do(ctx, StepApply, func() error {
		err := c.client.Store(set, &imap.StoreFlags{
			Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag},
		}, nil).Close()
		if err != nil {
			return fmt.Errorf("storing %s on uids %v: %w", flag, set, err)
		}
		return nil
	})
}

func (c *Conn) delete(ctx context.Context, set imap.UIDSet) error {
	if err := c.addFlag(ctx, set, imap.FlagDeleted); err != nil {
		return err
	}
	if !c.caps.Has(imap.CapUIDPlus) {
		c.log.Warn("imap server lacks UIDPLUS: messages left flagged \\Deleted, not expunged", "uids", set.String())
		return nil
	}
	return c.uidExpunge(ctx, set)
}

func (c *Conn) uidExpunge(ctx context.Context, set imap.UIDSet) error {
	return c.do(ctx, StepApply, func() error {
		if err := c.client.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("expunging uids %v: %w", set, err)
		}
		return nil
	})
}

func (c *Conn) move(ctx context.Context, set imap.UIDSet, moveTo string) error {
	hasMove := c.caps.Has(imap.CapMove)
	// imapclient's Move decides on its own capabilities and falls back to
	// a plain EXPUNGE without UIDPLUS: call it only when MOVE is certain.
	transfer := func() error {
		if hasMove {
			_, err := c.client.Move(set, moveTo).Wait()
			return err
		}
		_, err := c.client.Copy(set, moveTo).Wait()
		return err
	}
	err := c.do(ctx, StepApply, func() error {
		err := transfer()
		var imapErr *imap.Error
		if errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeTryCreate {
			c.log.Info("imap creating the folder to move to", "folder", moveTo)
			if err := c.client.Create(moveTo, nil).Wait(); err != nil &&
				!(errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists) {
				return fmt.Errorf("creating folder %q: %w", moveTo, err)
			}
			err = transfer()
		}
		if err != nil {
			return fmt.Errorf("moving uids %v to %q: %w", set, moveTo, err)
		}
		return nil
	})
	if err != nil || hasMove {
		return err
	}
	// Copied: now remove exactly those from this folder.
	if err := c.addFlag(ctx, set, imap.FlagDeleted); err != nil {
		return err
	}
	return c.uidExpunge(ctx, set)
}
