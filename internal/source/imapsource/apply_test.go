package imapsource

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
)

func TestApply(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)

	// Each case starts with messages 1–4 in INBOX, 4 flagged \Deleted by
	// another client (which a plain EXPUNGE would remove), applies the
	// action to 1 and 3 twice (as after a crash) and once more with a UID
	// that never existed, and checks both folders.
	tests := []struct {
		name    string
		action  string
		without []imap.Cap // capabilities the Conn pretends the server lacks
		// wantInbox maps the UIDs left in INBOX to their flags.
		wantInbox map[uint32][]string
		// wantArchive is the number of messages in Archive, -1 if it must
		// not exist.
		wantArchive int
		wantErr     error
	}{
		{
			name:        "none",
			action:      imapconf.AfterNone,
			wantInbox:   map[uint32][]string{1: {}, 2: {}, 3: {}, 4: {`\Deleted`}},
			wantArchive: -1,
		},
		{
			name:        "seen",
			action:      imapconf.AfterSeen,
			wantInbox:   map[uint32][]string{1: {`\Seen`}, 2: {}, 3: {`\Seen`}, 4: {`\Deleted`}},
			wantArchive: -1,
		},
		{
			name:        "delete",
			action:      imapconf.AfterDelete,
			wantInbox:   map[uint32][]string{2: {}, 4: {`\Deleted`}},
			wantArchive: -1,
		},
		{
			name:        "delete without UIDPLUS leaves them flagged",
			action:      imapconf.AfterDelete,
			without:     []imap.Cap{imap.CapUIDPlus},
			wantInbox:   map[uint32][]string{1: {`\Deleted`}, 2: {}, 3: {`\Deleted`}, 4: {`\Deleted`}},
			wantArchive: -1,
		},
		{
			name:        "move",
			action:      imapconf.AfterMove,
			wantInbox:   map[uint32][]string{2: {}, 4: {`\Deleted`}},
			wantArchive: 2,
		},
		{
			name:        "move without MOVE copies, then expunges by UID",
			action:      imapconf.AfterMove,
			without:     []imap.Cap{imap.CapMove},
			wantInbox:   map[uint32][]string{2: {}, 4: {`\Deleted`}},
			wantArchive: 2,
		},
		{
			name:        "move without MOVE and UIDPLUS refused",
			action:      imapconf.AfterMove,
			without:     []imap.Cap{imap.CapMove, imap.CapUIDPlus},
			wantInbox:   map[uint32][]string{1: {}, 2: {}, 3: {}, 4: {`\Deleted`}},
			wantArchive: -1,
			wantErr:     ErrCannotMove,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := newUser(t, d, "apply"+string(rune('a'+i)))
			raws := [][]byte{sourcetest.NewMessage(1, 10), sourcetest.NewMessage(2, 10), sourcetest.NewMessage(3, 10), sourcetest.NewMessage(4, 10)}
			if uids := appendMessages(t, d, cfg.Username, "INBOX", raws...); !slices.Equal(uids, []uint32{1, 2, 3, 4}) {
				t.Fatalf("got UIDs %v, want 1 to 4", uids)
			}
			d.Doveadm(t, "flags", "add", "-u", cfg.Username, `\Deleted`, "mailbox", "INBOX", "uid", "4")
			c := dialSelect(t, cfg, Options{})
			for _, cp := range tt.without {
				delete(c.caps, cp)
			}

			for _, uids := range [][]uint32{{3, 1}, {1, 3}, {1, 3, 99}} {
				err := c.Apply(testCtx(t), tt.action, "Archive", uids)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("applying to %v: got %v, want %v", uids, err, tt.wantErr)
				}
			}

			if got := serverState(t, d, cfg.Username, "INBOX"); !maps.EqualFunc(got, tt.wantInbox, flagsEqual) {
				t.Errorf("got INBOX %v, want %v", got, tt.wantInbox)
			}
			out := d.Doveadm(t, "mailbox", "list", "-u", cfg.Username)
			hasArchive := slices.Contains(splitLines(out), "Archive")
			if tt.wantArchive < 0 {
				if hasArchive {
					t.Errorf("got folder Archive, want none")
				}
				return
			}
			if !hasArchive {
				t.Fatalf("got folders %q, want Archive among them", out)
			}
			archived := serverState(t, d, cfg.Username, "Archive")
			if len(archived) != tt.wantArchive {
				t.Errorf("got %d messages in Archive, want %d", len(archived), tt.wantArchive)
			}
			// The moved messages are messages 1 and 3.
			archive := cfg
			archive.Folder = "Archive"
			ac := dialSelect(t, archive, Options{})
			moved := collect(t, func(fn func(Message) error) error { return ac.FetchAfter(testCtx(t), 0, 0, fn) })
			for i, m := range moved {
				if want := crlf(raws[2*i]); string(m.Raw) != string(want) {
					t.Errorf("archived message %d: got %.50q, want %.50q", i, m.Raw, want)
				}
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		cfg := newUser(t, d, "applyerr")
		c := dialSelect(t, cfg, Options{})
		tests := []struct {
			name, action, moveTo string
		}{
			{"unknown action", "archive", ""},
			{"move without folder", imapconf.AfterMove, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := c.Apply(testCtx(t), tt.action, tt.moveTo, []uint32{1})
				var se *StepError
				if !errors.As(err, &se) || se.Step != StepApply {
					t.Errorf("got %v, want an apply step error", err)
				}
			})
		}
		// No UIDs: nothing to do, whatever the action.
		if err := c.Apply(testCtx(t), imapconf.AfterMove, "Archive", nil); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
}

func flagsEqual(a, b []string) bool {
	return slices.Equal(a, b) || (len(a) == 0 && len(b) == 0)
}

func splitLines(s string) []string {
	var lines []string
	for line := range strings.Lines(s) {
		lines = append(lines, strings.TrimSpace(line))
	}
	return lines
}
