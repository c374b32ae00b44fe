package graphsource_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
)

// TestHugeAnswer checks that a JSON answer of Graph over the bound (4 MiB)
// fails its step, saying so, rather than being read whole: a delta page, a
// folder, and the test connection's look at the mailbox.
func TestHugeAnswer(t *testing.T) {
	huge := strings.Repeat("a", 5<<20)
	const want = "reading the response: answer longer than 4194304 bytes"
	tests := []struct {
		name     string
		path     string // of the answer that is too large
		body     string
		call     func(e *env) (step string, err string)
		wantStep string
	}{
		{"delta page", "/messages/delta", `{"value":[{"id":"m1","subject":"` + huge + `"}]}`, func(e *env) (string, string) {
			_, err := e.client(t, graphsource.Options{}).Delta(context.Background(), "", func(graphsource.Message) error { return nil })
			return stepOf(err), errText(err)
		}, graphsource.StepDelta},
		{"folder", "/mailFolders/inbox", `{"id":"f1","displayName":"` + huge + `"}`, func(e *env) (string, string) {
			_, err := e.client(t, graphsource.Options{}).FindFolder(context.Background(), "Inbox")
			return stepOf(err), errText(err)
		}, graphsource.StepFolder},
		{"test connection", "/mailFolders/inbox", `{"id":"f1","displayName":"` + huge + `"}`, func(e *env) (string, string) {
			r := graphsource.Test(context.Background(), e.cfg, graphsource.Options{})
			return r.Step, r.Error
		}, graphsource.StepMailbox},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			e.fake.AddMessage(user, rawMessage(1))
			e.fake.Inject(graphfake.Fault{Method: "GET", PathContains: tt.path, Body: []byte(tt.body)})
			step, err := tt.call(e)
			if step != tt.wantStep || !strings.Contains(err, want) || len(err) > 300 {
				t.Errorf("got step %q error %.300q, want step %q saying %q", step, err, tt.wantStep, want)
			}
		})
	}
}

func stepOf(err error) string {
	var se *graphsource.StepError
	if !errors.As(err, &se) {
		return ""
	}
	return se.Step
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
