package source

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
)

func TestWithLogin(t *testing.T) {
	ctx := context.Background()
	o := ClientOptions{DialTimeout: time.Second}
	if got, err := o.WithLogin(ctx, nil); err != nil || got.SASL != nil || got.DialTimeout != time.Second {
		t.Errorf("without a login: got %+v, %v, want the options as they are", got, err)
	}
	refused := errors.New("no token")
	if _, err := o.WithLogin(ctx, func(context.Context) (SASLFunc, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("a failing login: got %v, want its error", err)
	}
	called := false
	hook := func(context.Context, imapconf.Config) (sasl.Client, error) { called = true; return nil, nil }
	got, err := o.WithLogin(ctx, func(context.Context) (SASLFunc, error) { return hook, nil })
	if err != nil || got.SASL == nil || got.DialTimeout != time.Second {
		t.Fatalf("a login: got %+v, %v, want its hook set", got, err)
	}
	_, _ = got.SASL(ctx, imapconf.Config{})
	if !called {
		t.Error("the options' SASL is not the login's hook")
	}
	if o.SASL != nil {
		t.Error("WithLogin changed the options it was called on")
	}
}
