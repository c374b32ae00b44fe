package web

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The mailbox conditions the alert monitor records (store.AlertConditions
// with the prefix "mailbox:") that put a banner on every page.
const (
	conditionAuthFailed = "auth_failed"
	conditionFailing    = "failing"
)

// bannerItem is one failing mailbox in the banner.
type bannerItem struct {
	Name  string
	What  string // "authentication failed", "failing"
	Since time.Time
	Error string // the last error, redacted by the monitor, shortened
}

// maxBannerError is how much of a mailbox's last error the banner shows.
const maxBannerError = 160

// banner returns the mailboxes whose condition is auth_failed or failing,
// oldest first. It costs one query per page while every mailbox is well;
// the configurations are read only when one is not. A failure to read
// leaves the banner out (the page itself matters more) and is logged.
func (u *UI) banner(ctx context.Context) []bannerItem {
	conds, err := u.store.AlertConditions(ctx, "mailbox:")
	if err != nil {
		if ctx.Err() == nil {
			u.log.Warn("reading the mailboxes' alert conditions for the banner", "err", err)
		}
		return nil
	}
	var failing []bannerItem
	ids := map[int64]int{} // config id → index in failing
	for _, c := range conds {
		var what string
		switch c.Condition {
		case conditionAuthFailed:
			what = "authentication failed"
		case conditionFailing:
			what = "failing"
		default:
			continue
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(c.Key, "mailbox:"), 10, 64)
		if err != nil {
			continue
		}
		ids[id] = len(failing)
		failing = append(failing, bannerItem{What: what, Since: c.Since, Error: uiError(c.Error)})
	}
	if len(failing) == 0 {
		return nil
	}
	cs, err := u.allIMAP(ctx)
	if err != nil {
		u.log.Warn("reading the mailboxes for the banner", "err", err)
		return nil
	}
	var out []bannerItem
	for _, c := range cs {
		if i, ok := ids[c.ID]; ok && c.Enabled {
			it := failing[i]
			it.Name = c.Name
			// The monitor records errors redacted; a secret of the
			// mailbox that got through all the same is cut out here.
			it.Error = shorten(scrub(it.Error, c.Password, c.ClientSecret), maxBannerError)
			out = append(out, it)
		}
	}
	slices.SortStableFunc(out, func(a, b bannerItem) int { return a.Since.Compare(b.Since) })
	return out
}

// shorten cuts s to at most n characters, with an ellipsis.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// clock is a time as the banner says it: the time of day (UTC) when it is
// today, else the date too.
func clock(v any) string {
	t, ok := asTime(v)
	if !ok {
		return "—"
	}
	t = t.UTC()
	if t.Format(time.DateOnly) == time.Now().UTC().Format(time.DateOnly) {
		return t.Format("15:04") + " UTC"
	}
	return t.Format("2006-01-02 15:04") + " UTC"
}

// scrub replaces every secret (of 4 characters or more) in s.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}
