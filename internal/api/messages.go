package api

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// MessageView is a recorded message in responses.
type MessageView struct {
	ID          int64            `json:"id"`
	IMAP        string           `json:"imap"`
	MessageID   string           `json:"messageId"`
	Subject     string           `json:"subject"`
	From        []mail.Address   `json:"from"`
	To          []mail.Address   `json:"to"`
	Cc          []mail.Address   `json:"cc"`
	ReplyTo     []mail.Address   `json:"replyTo"`
	Date        *time.Time       `json:"date"`
	Size        int64            `json:"size"`
	ReceivedAt  time.Time        `json:"receivedAt"`
	ParseError  string           `json:"parseError"`
	TooLarge    bool             `json:"tooLarge"`
	UIDValidity uint32           `json:"uidValidity"`
	UID         uint32           `json:"uid"`
	Attachments []AttachmentView `json:"attachments"`
	Text        *string          `json:"text,omitempty"`   // on view only
	HTML        *string          `json:"html,omitempty"`   // on view only
	Matches     []MatchView      `json:"matches,omitzero"` // on view only: per flow, matched or why not
}

// AttachmentView describes an attachment; its content is at URL.
type AttachmentView struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Inline      bool   `json:"inline"`
	ContentID   string `json:"contentId,omitempty"`
	URL         string `json:"url"`
}

func messageView(m store.StoredMessage, full bool) MessageView {
	v := MessageView{ID: m.ID, IMAP: m.IMAPName, MessageID: m.MessageID, Subject: m.Subject, From: m.From, To: m.To, Cc: m.Cc,
		ReplyTo: m.ReplyTo, Date: m.Date, Size: m.Size, ReceivedAt: m.ReceivedAt, ParseError: m.ParseError, TooLarge: m.TooLarge,
		UIDValidity: m.UIDValidity, UID: m.UID, Attachments: []AttachmentView{}}
	for _, a := range m.Attachments {
		v.Attachments = append(v.Attachments, AttachmentView{Filename: a.Filename, ContentType: a.ContentType, Size: a.Size,
			SHA256: a.SHA256, Inline: a.Inline, ContentID: a.ContentID, URL: fmt.Sprintf("/api/v1/messages/%d/attachments/%d", m.ID, a.N)})
	}
	if full {
		v.Text, v.HTML = &m.Text, &m.HTML
	}
	return v
}

func (a *API) messageRoutes(h func(string, http.HandlerFunc)) {
	h("GET /api/v1/messages", a.listMessages)
	h("GET /api/v1/messages/{id}", a.getMessage)
	h("GET /api/v1/messages/{id}/raw", a.rawMessage)
	h("GET /api/v1/messages/{id}/attachments/{n}", a.attachment)
}

func (a *API) listMessages(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	var before int64
	if err == nil && cursor != "" {
		before, err = strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			err = valid.Errors{"cursor": "not a cursor returned by this API"}
		}
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ms, err := a.store.ListMessages(r.Context(), r.URL.Query().Get("imap"), before, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[MessageView]{Items: []MessageView{}}
	for i, m := range ms {
		if i == limit {
			out.NextCursor = encodeCursor(strconv.FormatInt(ms[i-1].ID, 10))
			break
		}
		out.Items = append(out.Items, messageView(m, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("%s %q: %w", name, r.PathValue(name), store.ErrNotFound)
	}
	return id, nil
}

func (a *API) getMessage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err == nil {
		var m store.StoredMessage
		if m, err = a.store.GetMessage(r.Context(), id); err == nil {
			var ms []store.Match
			if ms, err = a.store.Matches(r.Context(), id); err == nil {
				v := messageView(m, true)
				v.Matches = matchViews(ms)
				writeJSON(w, http.StatusOK, v)
				return
			}
		}
	}
	a.writeError(w, r, err)
}

func (a *API) rawMessage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	var raw *store.Raw
	if err == nil {
		raw, err = a.store.OpenRaw(r.Context(), id)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="message-%d.eml"`, id))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.FormatInt(raw.Size(), 10))
	// Streamed: a message stored in chunks is read one chunk at a time.
	if _, err := io.Copy(w, raw.Reader()); err != nil {
		a.log.Warn("raw message download cut short", "message", id, "err", err)
	}
}

func (a *API) attachment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	var n int64
	if err == nil {
		n, err = pathID(r, "n")
	}
	var att store.StoredAttachment
	var content io.Reader
	if err == nil {
		att, content, err = a.store.OpenAttachment(r.Context(), id, int(n))
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ct := att.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Always a download: an attached HTML file must not run in our origin.
	name := att.Filename
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n)
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Content-Security-Policy", "sandbox")
	// Streamed: the content of a message stored once is decoded from its
	// raw bytes as it is sent.
	if _, err := io.Copy(w, content); err != nil {
		a.log.Warn("attachment download cut short", "message", id, "attachment", n, "err", err)
	}
}
