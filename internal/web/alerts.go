package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// Settings › Alerts: the alert subscriptions, each with its form, a "Send
// test" button and its recent deliveries.

var alertCrumbs = []crumb{{Text: "Administration"}, {Text: "Settings", Href: "/settings"}, {Text: "Alerts", Href: "/settings#alerts"}}

// recentDeliveries is how many deliveries a subscription's page shows.
const recentDeliveries = 20

// eventLabels say what each event type means, for the form's checkboxes.
var eventLabels = map[string]string{
	alert.TypeAuthFailed:  "A mailbox's login is refused",
	alert.TypeFailing:     "A mailbox keeps failing (error or stale past the threshold)",
	alert.TypeRecovered:   "A mailbox works again after one of those",
	alert.TypeRunFailed:   "A run failed for good",
	alert.TypeRunsBacklog: "Runs pile up (backlog)",
	alert.TypeReplicaLost: "A replica stopped and its mailboxes moved (PostgreSQL)",
}

// alertForm is the subscription form's values.
type alertForm struct {
	Name, Description, Kind, URL, To, Secret string
	Events                                   []string
	Enabled, Rotate                          bool
}

type eventChoice struct {
	Type, Label string
	Checked     bool
}

type alertPage struct {
	Create     bool
	Orig       string // the stored name
	Form       alertForm
	Errors     valid.Errors
	HasSecret  bool
	NewSecret  string // shown once, right after it was set or generated
	Events     []eventChoice
	Deliveries []store.AlertDelivery
	Delete     bool // the delete confirmation is open
}

func (u *UI) renderAlert(w http.ResponseWriter, r *http.Request, status int, p alertPage, fl *flash) {
	if p.Errors == nil {
		p.Errors = valid.Errors{}
	}
	for _, t := range alert.Types {
		p.Events = append(p.Events, eventChoice{Type: t, Label: eventLabels[t], Checked: slices.Contains(p.Form.Events, t)})
	}
	if !p.Create {
		ds, err := u.store.ListAlertDeliveries(r.Context(), p.Orig, 0, recentDeliveries)
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		p.Deliveries = ds
	}
	title := "New alert subscription"
	if !p.Create {
		title = "Alert " + p.Orig
	}
	pg := page{Title: title, Nav: "settings", Crumbs: alertCrumbs, Data: p, Flash: fl}
	switch {
	case r.Method != http.MethodPost:
	case p.Create:
		pg.Canonical = "/settings/alerts/new"
	default:
		pg.Canonical = "/settings/alerts/" + pathEscape(p.Orig)
	}
	u.render(w, r, status, "alert", pg)
}

func formFromAlert(a store.AlertSubscription) alertForm {
	return alertForm{Name: a.Name, Description: a.Description, Kind: a.Kind, URL: a.URL, To: strings.Join(a.To, "\n"),
		Events: a.Events, Enabled: a.Enabled}
}

func (u *UI) alertNew(w http.ResponseWriter, r *http.Request) {
	f := alertForm{Kind: store.AlertWebhook, Enabled: true, Events: []string{alert.TypeAuthFailed, alert.TypeFailing, alert.TypeRecovered}}
	u.renderAlert(w, r, http.StatusOK, alertPage{Create: true, Form: f}, nil)
}

func (u *UI) alertEdit(w http.ResponseWriter, r *http.Request) {
	a, err := u.store.GetAlert(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderAlert(w, r, http.StatusOK, alertPage{Orig: a.Name, Form: formFromAlert(a), HasSecret: a.Secret != ""}, nil)
}

func (u *UI) alertDeleteDialog(w http.ResponseWriter, r *http.Request) {
	a, err := u.store.GetAlert(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderAlert(w, r, http.StatusOK, alertPage{Orig: a.Name, Form: formFromAlert(a), HasSecret: a.Secret != "", Delete: true}, nil)
}

// alertInput reads the form into the API's input: the URL for a webhook,
// the recipients (one a line, or separated by commas) for e-mail.
func alertInput(r *http.Request) (control.AlertInput, alertForm) {
	pf := r.PostForm
	f := alertForm{Name: strings.TrimSpace(pf.Get("name")), Description: pf.Get("description"), Kind: pf.Get("kind"),
		URL: strings.TrimSpace(pf.Get("url")), To: pf.Get("to"), Events: pf["events"],
		Enabled: pf.Get("enabled") != "", Rotate: pf.Get("rotate") != ""}
	in := control.AlertInput{Name: &f.Name, Description: &f.Description, Kind: &f.Kind, Events: f.Events, Enabled: &f.Enabled}
	if f.Kind == store.AlertEmail {
		for _, a := range strings.FieldsFunc(f.To, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ';' }) {
			if a = strings.TrimSpace(a); a != "" {
				in.To = append(in.To, a)
			}
		}
	} else {
		in.URL = &f.URL
		secret := strings.TrimSpace(pf.Get("secret"))
		in.Secret, in.RotateSecret = &secret, &f.Rotate
	}
	return in, f
}

// alertFormErrors names the API's field errors by the form's fields: an
// address or an event by its field, with its position in the message.
func alertFormErrors(ve valid.Errors) valid.Errors {
	out := valid.Errors{}
	for k, m := range ve {
		field, rest, ok := strings.Cut(k, "[")
		if ok && (field == "to" || field == "events") {
			var i int
			fmt.Sscan(strings.TrimSuffix(rest, "]"), &i)
			what := "address"
			if field == "events" {
				what = "event"
			}
			out.Add(field, fmt.Sprintf("%s %d: %s", what, i+1, m))
			continue
		}
		if k == "rotateSecret" {
			k = "secret"
		}
		out.Add(k, m)
	}
	return out
}

func (u *UI) alertCreate(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	in, f := alertInput(r)
	s, err := u.changes.CreateAlert(r.Context(), userFrom(r.Context()), in, nil)
	u.alertSaved(w, r, alertPage{Create: true, Form: f}, s, err, "created")
}

func (u *UI) alertSave(w http.ResponseWriter, r *http.Request) {
	prev, err := u.store.GetAlert(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	in, f := alertInput(r)
	s, err := u.changes.EditAlert(r.Context(), userFrom(r.Context()), prev, in, nil)
	u.alertSaved(w, r, alertPage{Orig: prev.Name, Form: f, HasSecret: prev.Secret != ""}, s, err, "saved")
}

// alertSaved answers a create or an edit: the form again with its errors,
// or the subscription's page, with its new secret when it has one (shown
// in this answer only).
func (u *UI) alertSaved(w http.ResponseWriter, r *http.Request, p alertPage, s control.SavedAlert, err error, verb string) {
	var ve valid.Errors
	switch {
	case errors.As(err, &ve):
		p.Errors = alertFormErrors(ve)
		p.Form.Secret = ""
		u.renderAlert(w, r, http.StatusBadRequest, p, &flash{Kind: "error", Text: "The subscription was not saved: see the fields below."})
		return
	case errors.Is(err, store.ErrConflict):
		p.Errors = valid.Errors{"name": "an alert subscription with this name exists; choose another name"}
		p.Form.Secret = ""
		u.renderAlert(w, r, http.StatusConflict, p, nil)
		return
	case err != nil:
		u.fail(w, r, err)
		return
	}
	a := s.Alert
	if !s.NewSecret {
		u.setFlash(r, "ok", fmt.Sprintf("Alert subscription %s %s.", a.Name, verb))
		redirect(w, r, "/settings/alerts/"+pathEscape(a.Name))
		return
	}
	// The secret is in this answer only: render the page rather than
	// redirecting, and make a reload show the page without it.
	np := alertPage{Orig: a.Name, Form: formFromAlert(a), HasSecret: true, NewSecret: a.Secret}
	u.renderAlert(w, r, http.StatusOK, np, &flash{Kind: "ok", Text: fmt.Sprintf("Alert subscription %s %s.", a.Name, verb)})
}

func (u *UI) alertDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := u.changes.DeleteAlert(r.Context(), userFrom(r.Context()), name); err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Alert subscription %s deleted.", name))
	redirect(w, r, "/settings#alerts")
}

func (u *UI) alertTest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := u.changes.TestAlert(r.Context(), userFrom(r.Context()), name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Sample alert.test event queued as %s: its delivery is listed below.", d.PublicID))
	redirect(w, r, "/settings/alerts/"+pathEscape(name)+"#deliveries")
}

// alertTarget is where a subscription sends, for the settings list.
func alertTarget(a store.AlertSubscription) string {
	if a.Kind == store.AlertEmail {
		return strings.Join(a.To, ", ")
	}
	return a.URL
}
