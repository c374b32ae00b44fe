package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
)

var imapCrumbs = []crumb{{Text: "Management"}, {Text: "Configuration Management"}, {Text: "IMAP", Href: "/imap"}}

// imapPage is the IMAP cards page, with at most one panel or dialog open.
type imapPage struct {
	Cards  []imapCard
	Panel  *imapPanel
	Dialog *imapDialog
}

type imapCard struct {
	imapconf.View
	Status statusView
	Flows  []string
	// SameMailbox names the other enabled configurations reading the same
	// mailbox as this one, itself enabled.
	SameMailbox []string
}

// mailboxKey identifies the mailbox a configuration reads.
func mailboxKey(c imapconf.Config) string {
	folder := strings.ToLower(c.Folder)
	if folder == "" {
		folder = "inbox"
	}
	if c.Type == imapconf.TypeMSGraph {
		return "graph|" + strings.ToLower(c.TenantID) + "|" + strings.ToLower(c.Username) + "|" + folder
	}
	if c.ServerType == imapconf.ServerPOP3S {
		folder = "inbox" // POP3 reads the inbox only
	}
	return fmt.Sprintf("%s|%s|%d|%s|%s", c.ServerType, strings.ToLower(c.Host), c.Port, strings.ToLower(c.Username), folder)
}

// sameMailbox maps the lower-case name of each enabled configuration to the
// other enabled ones reading the same mailbox: each message would be read,
// and start its flows, once per configuration.
func sameMailbox(cs []imapconf.Config) map[string][]string {
	by := map[string][]string{}
	for _, c := range cs {
		if c.Enabled {
			by[mailboxKey(c)] = append(by[mailboxKey(c)], c.Name)
		}
	}
	out := map[string][]string{}
	for _, names := range by {
		if len(names) < 2 {
			continue
		}
		for _, n := range names {
			for _, o := range names {
				if o != n {
					out[strings.ToLower(n)] = append(out[strings.ToLower(n)], o)
				}
			}
		}
	}
	return out
}

// sameMailboxText is the warning of a configuration reading the same
// mailbox as others.
func sameMailboxText(others []string) string {
	if len(others) == 0 {
		return ""
	}
	return "Reads the same mailbox as " + strings.Join(others, ", ") +
		": each message would be read, and start its flows, once for each. Disable all but one."
}

// listPage is how many rows every reads at a time.
const listPage = 500

// every reads a whole list by name, a page at a time.
func every[T any](ctx context.Context, list func(ctx context.Context, after string, limit int) ([]T, error), name func(T) string) ([]T, error) {
	var all []T
	after := ""
	for {
		page, err := list(ctx, after, listPage)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < listPage {
			return all, nil
		}
		after = name(page[len(page)-1])
	}
}

// allIMAP returns every configuration, by name.
func (u *UI) allIMAP(ctx context.Context) ([]imapconf.Config, error) {
	return every(ctx, u.store.ListIMAP, func(c imapconf.Config) string { return c.Name })
}

// allFlows returns every flow, by name.
func (u *UI) allFlows(ctx context.Context) ([]store.FlowRecord, error) {
	return every(ctx, u.store.ListFlows, func(f store.FlowRecord) string { return f.Name })
}

// flowsByIMAP maps a configuration's lower-case name to the flows whose
// trigger names it.
func (u *UI) flowsByIMAP(ctx context.Context) (map[string][]string, error) {
	fs, err := u.allFlows(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, f := range fs {
		k := strings.ToLower(f.IMAPName)
		out[k] = append(out[k], f.Name)
	}
	return out, nil
}

func (u *UI) imapPageData(ctx context.Context) (imapPage, map[string][]string, error) {
	cs, err := u.allIMAP(ctx)
	if err != nil {
		return imapPage{}, nil, err
	}
	flows, err := u.flowsByIMAP(ctx)
	if err != nil {
		return imapPage{}, nil, err
	}
	signIns, err := u.changes.SignIns(ctx, cs)
	if err != nil {
		return imapPage{}, nil, err
	}
	p := imapPage{Cards: []imapCard{}}
	same := sameMailbox(cs)
	for _, c := range cs {
		card := imapCard{View: c.View(), Status: u.statusOf(c), Flows: flows[strings.ToLower(c.Name)],
			SameMailbox: same[strings.ToLower(c.Name)]}
		if si, ok := signIns[c.ID]; ok {
			card.SignIn = &si
		}
		p.Cards = append(p.Cards, card)
	}
	return p, flows, nil
}

func (u *UI) renderIMAP(w http.ResponseWriter, r *http.Request, status int, p imapPage) {
	title := "IMAP"
	switch {
	case p.Panel != nil && p.Panel.Create:
		title = "New IMAP configuration"
	case p.Panel != nil:
		title = "IMAP configuration " + p.Panel.Orig
	case p.Dialog != nil && p.Dialog.Kind == "duplicate":
		title = "Duplicate " + p.Dialog.Name
	case p.Dialog != nil:
		title = "Delete " + p.Dialog.Name
	}
	u.render(w, r, status, "imap", page{Title: title, Nav: "imap", Crumbs: imapCrumbs, Data: p})
}

func (u *UI) imapList(w http.ResponseWriter, r *http.Request) {
	p, _, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	u.renderIMAP(w, r, http.StatusOK, p)
}
