package control

import (
	"context"
	"errors"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/valid"
)

// CreateIMAP builds a configuration from in (imapconf.Build) and stores it.
// found are problems the caller met reading in (a form's port that is not
// a number): they stop the change as Build's do and win over Build's
// message for the same field. Invalid input is a valid.Errors naming every
// field; a taken name is store.ErrConflict.
func (c *Changes) CreateIMAP(ctx context.Context, by string, in imapconf.Input, found valid.Errors) (imapconf.Config, error) {
	conf, err := buildIMAP(in, nil, found)
	if err != nil {
		return conf, err
	}
	if err := c.store.CreateIMAP(ctx, &conf); err != nil {
		return conf, err
	}
	c.logAs(by, "imap configuration created", "imap", conf.Name)
	c.rt.Changed(ctx)
	return conf, nil
}

// EditIMAP builds the configuration prev becomes with in, and stores it. A
// secret left out is kept where Build allows it; found is as for CreateIMAP.
func (c *Changes) EditIMAP(ctx context.Context, by string, prev imapconf.Config, in imapconf.Input, found valid.Errors) (imapconf.Config, error) {
	conf, err := buildIMAP(in, &prev, found)
	if err != nil {
		return conf, err
	}
	if err := c.store.UpdateIMAP(ctx, &conf); err != nil {
		return conf, err
	}
	if conf.Name != prev.Name {
		c.logAs(by, "imap configuration renamed", "imap", conf.Name, "old_name", prev.Name)
	} else {
		c.logAs(by, "imap configuration edited", "imap", conf.Name)
	}
	c.rt.Changed(ctx)
	return conf, nil
}

// buildIMAP is imapconf.Build with the caller's own findings merged in
// first. An error that is not about the input is returned as it is.
func buildIMAP(in imapconf.Input, prev *imapconf.Config, found valid.Errors) (imapconf.Config, error) {
	conf, err := imapconf.Build(in, prev)
	var ve valid.Errors
	if err != nil && !errors.As(err, &ve) {
		return conf, err
	}
	return conf, merged(found, ve).Err()
}

// merged is every field error of sets in one, the first set's message
// where several name a field.
func merged(sets ...valid.Errors) valid.Errors {
	e := valid.Errors{}
	for _, set := range sets {
		for k, m := range set {
			e.Add(k, m)
		}
	}
	return e
}

// DuplicateIMAP stores a disabled copy of orig (imapconf.Duplicate), with
// the secrets in given where the copy needs them again.
func (c *Changes) DuplicateIMAP(ctx context.Context, by string, orig imapconf.Config, in imapconf.DuplicateInput) (imapconf.Config, error) {
	conf, err := imapconf.Duplicate(orig, in)
	if err != nil {
		return conf, err
	}
	if err := c.store.CreateIMAPCopy(ctx, &conf, orig.Name); err != nil {
		return conf, err
	}
	c.logAs(by, "imap configuration duplicated", "imap", conf.Name, "original", orig.Name)
	c.rt.Changed(ctx)
	return conf, nil
}

// DeleteIMAP deletes the configuration called name. One that a flow's
// trigger names is not deleted: *store.InUseError lists those flows.
func (c *Changes) DeleteIMAP(ctx context.Context, by, name string) error {
	if err := c.store.DeleteIMAP(ctx, name); err != nil {
		return err
	}
	c.logAs(by, "imap configuration deleted", "imap", name)
	c.rt.Changed(ctx)
	return nil
}

// SetIMAPEnabled enables or disables conf (as read from the store). The
// watchers are told only when that changes anything.
func (c *Changes) SetIMAPEnabled(ctx context.Context, by string, conf imapconf.Config, enabled bool) error {
	if conf.Enabled != enabled {
		conf.Enabled = enabled
		if err := c.store.UpdateIMAP(ctx, &conf); err != nil {
			return err
		}
		c.rt.Changed(ctx)
	}
	verb := "disabled"
	if enabled {
		verb = "enabled"
	}
	c.logAs(by, "imap configuration "+verb, "imap", conf.Name)
	return nil
}
