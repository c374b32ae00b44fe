package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// owedLedger is a Ledger that holds owed after-processing and writes down,
// in order, the calls RedoOwed and Pay make (with those of apply).
type owedLedger struct {
	Ledger // the methods RedoOwed must not call: nil, they panic
	owed   []Owed
	events []string
	// refuse is the action BeforeAction refuses.
	refuse string
}

func (l *owedLedger) Owed(context.Context) ([]Owed, error) {
	l.events = append(l.events, "owed")
	return append([]Owed(nil), l.owed...), nil
}

func (l *owedLedger) BeforeAction(_ context.Context, action string) error {
	l.events = append(l.events, "before "+action)
	if action == l.refuse {
		return errors.New("lease lost")
	}
	return nil
}

func (l *owedLedger) Paid(_ context.Context, epoch uint32, done []Owed) error {
	l.events = append(l.events, fmt.Sprintf("paid %d %s", epoch, uids(done)))
	paid := map[uint32]bool{}
	for _, o := range done {
		paid[o.UID] = true
	}
	var left []Owed
	for _, o := range l.owed {
		if !(o.Epoch == epoch && paid[o.UID]) {
			left = append(left, o)
		}
	}
	l.owed = left
	return nil
}

// apply returns an Apply that writes its calls down, failing for failOn.
func (l *owedLedger) apply(failOn string) Apply {
	return func(_ context.Context, action, moveTo string, owed []Owed) error {
		l.events = append(l.events, fmt.Sprintf("apply %s %q %s", action, moveTo, uids(owed)))
		if action == failOn {
			return errors.New("server said no")
		}
		return nil
	}
}

func uids(owed []Owed) string {
	var s []string
	for _, o := range owed {
		s = append(s, fmt.Sprint(o.UID))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func someOwed() []Owed {
	return []Owed{
		{Epoch: 7, UID: 1, Action: "move", MoveTo: "Done"},
		{Epoch: 7, UID: 2, Action: "delete"},
		{Epoch: 6, UID: 3, Action: "delete"}, // an older epoch: not this one's
		{Epoch: 7, UID: 4, Action: "move", MoveTo: "Done"},
		{Epoch: 7, UID: 5, Action: "move", MoveTo: "Other"},
		{Epoch: 7, UID: 6, Action: "delete"},
	}
}

func TestRedoOwedGroupsByActionInOrderAndPaysEach(t *testing.T) {
	l := &owedLedger{owed: someOwed()}
	if err := RedoOwed(context.Background(), l, slog.New(slog.DiscardHandler), 7, l.apply("")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"owed",
		"before move", `apply move "Done" [1 4]`, "paid 7 [1 4]",
		"before delete", `apply delete "" [2 6]`, "paid 7 [2 6]",
		"before move", `apply move "Other" [5]`, "paid 7 [5]",
	}
	if !reflect.DeepEqual(l.events, want) {
		t.Errorf("calls:\n%q\nwant\n%q", l.events, want)
	}
	if len(l.owed) != 1 || l.owed[0].UID != 3 {
		t.Errorf("still owed %+v, want only UID 3 of the other epoch", l.owed)
	}
}

func TestRedoOwedStopsAtAnApplyErrorLeavingTheRestOwed(t *testing.T) {
	l := &owedLedger{owed: someOwed()}
	err := RedoOwed(context.Background(), l, nil, 7, l.apply("delete"))
	if err == nil || !strings.Contains(err.Error(), "after-processing (delete): server said no") {
		t.Fatalf("err = %v, want the server's error with the action", err)
	}
	want := []string{
		"owed",
		"before move", `apply move "Done" [1 4]`, "paid 7 [1 4]",
		"before delete", `apply delete "" [2 6]`,
	}
	if !reflect.DeepEqual(l.events, want) {
		t.Errorf("calls:\n%q\nwant\n%q", l.events, want)
	}
	if got := uids(l.owed); got != "[2 3 5 6]" {
		t.Errorf("still owed %s, want [2 3 5 6]", got)
	}
}

func TestPayAppliesNothingWhenBeforeActionRefuses(t *testing.T) {
	l := &owedLedger{owed: someOwed(), refuse: "move"}
	err := Pay(context.Background(), l, 7, "move", "Done", l.owed[:1], l.apply(""))
	if err == nil || !strings.Contains(err.Error(), "lease lost") {
		t.Fatalf("err = %v, want BeforeAction's", err)
	}
	if want := []string{"before move"}; !reflect.DeepEqual(l.events, want) {
		t.Errorf("calls %q, want %q", l.events, want)
	}
	if len(l.owed) != len(someOwed()) {
		t.Errorf("owed %d, want all %d still owed", len(l.owed), len(someOwed()))
	}
}

func TestRedoOwedWithNothingOwedDoesNothing(t *testing.T) {
	l := &owedLedger{}
	if err := RedoOwed(context.Background(), l, nil, 0, l.apply("")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"owed"}; !reflect.DeepEqual(l.events, want) {
		t.Errorf("calls %q, want %q", l.events, want)
	}
}
