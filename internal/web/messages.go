package web

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"mailtrigger/internal/store"
)

type messageRow struct {
	store.StoredMessage
	Matches []store.Match
}

type messagesPage struct {
	IMAP      string // the mailbox shown, "" for all
	Mailboxes []string
	Messages  []messageRow
	Older     string
	Newest    string
}

func (u *UI) messageList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p := messagesPage{IMAP: q.Get("imap")}
	var err error
	if p.Mailboxes, err = u.imapNames(ctx); err != nil {
		u.serverError(w, r, err)
		return
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	ms, err := u.store.ListMessages(ctx, p.IMAP, before, pageSize+1)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if len(ms) > pageSize {
		ms = ms[:pageSize]
		nq := url.Values{"before": {strconv.FormatInt(ms[len(ms)-1].ID, 10)}}
		if p.IMAP != "" {
			nq.Set("imap", p.IMAP)
		}
		p.Older = "/messages?" + nq.Encode()
	}
	if before > 0 {
		p.Newest = "/messages"
		if p.IMAP != "" {
			p.Newest += "?" + url.Values{"imap": {p.IMAP}}.Encode()
		}
	}
	for _, m := range ms {
		matches, err := u.store.Matches(ctx, m.ID)
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		p.Messages = append(p.Messages, messageRow{StoredMessage: m, Matches: matches})
	}
	u.render(w, r, http.StatusOK, "messages", page{Title: "Messages", Nav: "messages", Crumbs: messageCrumbs, Data: p})
}

type messagePage struct {
	Message store.StoredMessage
	Matches []store.Match
	Runs    []store.Run
}

func (u *UI) messageID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 0 {
		u.notFound(w, r)
		return 0, false
	}
	return id, true
}

func (u *UI) messageDetail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := u.messageID(w, r)
	if !ok {
		return
	}
	m, err := u.store.GetMessage(ctx, id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := messagePage{Message: m}
	if p.Matches, err = u.store.Matches(ctx, id); err != nil {
		u.serverError(w, r, err)
		return
	}
	if p.Runs, err = u.store.ListRuns(ctx, store.RunFilter{MessageID: id}, 0, 100); err != nil {
		u.serverError(w, r, err)
		return
	}
	title := m.Subject
	if title == "" {
		title = fmt.Sprintf("Message %d", id)
	}
	u.render(w, r, http.StatusOK, "message", page{Title: title, Nav: "messages", Crumbs: messageCrumbs, Data: p})
}

func (u *UI) messageRaw(w http.ResponseWriter, r *http.Request) {
	id, ok := u.messageID(w, r)
	if !ok {
		return
	}
	raw, err := u.store.MessageRaw(r.Context(), id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="message-%d.eml"`, id))
	w.Write(raw)
}

func (u *UI) messageAttachment(w http.ResponseWriter, r *http.Request) {
	id, ok := u.messageID(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		u.notFound(w, r)
		return
	}
	att, content, err := u.store.AttachmentContent(r.Context(), id, n)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	ct := att.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	name := att.Filename
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n)
	}
	// Always a download, sandboxed: an attached HTML file must not run in
	// this origin.
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Write(content)
}

func (u *UI) messageTrigger(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := u.messageID(w, r)
	if !ok || !u.parseForm(w, r) {
		return
	}
	force := r.PostForm.Has("force")
	runs, matches, err := u.changes.Retrigger(ctx, userFrom(ctx), id, force)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	matched := 0
	for _, m := range matches {
		if m.Matched {
			matched++
		}
	}
	var msg string
	switch {
	case len(runs) > 0:
		msg = fmt.Sprintf("Re-triggered: %d run%s started.", len(runs), plural(len(runs)))
	case matched > 0:
		msg = "Re-triggered: no new run, every matching flow has run for this message already. Tick \"Run again\" to start them again."
	default:
		msg = "Re-triggered: no flow on this mailbox matches the message."
	}
	u.setFlash(r, "ok", msg)
	redirect(w, r, fmt.Sprintf("/messages/%d", id))
}
