package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// AlertView is an alert subscription in responses. Secret is present only
// in the response of the change that set or generated it: it is shown
// once; HasSecret says whether there is one.
type AlertView struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Kind        string    `json:"kind"`
	URL         string    `json:"url,omitempty"`
	To          []string  `json:"to,omitempty"`
	Events      []string  `json:"events"`
	Enabled     bool      `json:"enabled"`
	HasSecret   bool      `json:"hasSecret"`
	Secret      string    `json:"secret,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func alertView(a store.AlertSubscription, showSecret bool) AlertView {
	v := AlertView{Name: a.Name, Description: a.Description, Kind: a.Kind, Events: a.Events, Enabled: a.Enabled,
		HasSecret: a.Kind == store.AlertWebhook && a.Secret != "", CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	if v.Events == nil {
		v.Events = []string{}
	}
	switch a.Kind {
	case store.AlertWebhook:
		v.URL = a.URL
		if showSecret {
			v.Secret = a.Secret
		}
	case store.AlertEmail:
		v.To = a.To
	}
	return v
}

// AlertDeliveryView is one alert event on its way to one subscription.
type AlertDeliveryView struct {
	ID            string     `json:"id"` // alrt_…: the webhook-id
	Subscription  string     `json:"subscription"`
	Event         string     `json:"event"` // the event's type
	EventID       string     `json:"eventId"`
	Object        string     `json:"object,omitempty"` // kind:name
	Test          bool       `json:"test"`
	Status        string     `json:"status"`
	AttemptCount  int        `json:"attemptCount"`
	CreatedAt     time.Time  `json:"createdAt"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
}

func alertDeliveryView(d store.AlertDelivery) AlertDeliveryView {
	v := AlertDeliveryView{ID: d.PublicID, Subscription: d.Subscription, Event: d.Event.Type, EventID: d.Event.ID,
		Test: d.Event.Test, Status: d.Status, AttemptCount: d.Attempts, CreatedAt: d.CreatedAt, DeliveredAt: d.DeliveredAt,
		LastError: d.LastError}
	if d.Event.ObjectKind != "" {
		v.Object = d.Event.ObjectKind
		if d.Event.ObjectName != "" {
			v.Object += ":" + d.Event.ObjectName
		}
	}
	if (d.Status == store.RunPending || d.Status == store.RunRetrying) && !d.NextAttemptAt.IsZero() {
		next := d.NextAttemptAt
		v.NextAttemptAt = &next
	}
	return v
}

func (a *API) alertRoutes(h func(string, http.HandlerFunc)) {
	h("GET /api/v1/alerts", a.listAlerts)
	h("POST /api/v1/alerts", a.createAlert)
	h("GET /api/v1/alerts/{name}", a.getAlert)
	h("PUT /api/v1/alerts/{name}", a.editAlert)
	h("DELETE /api/v1/alerts/{name}", a.deleteAlert)
	h("POST /api/v1/alerts/{name}/test", a.testAlert)
	h("GET /api/v1/alerts/{name}/deliveries", a.listAlertDeliveries)
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	subs, err := a.store.ListAlerts(r.Context(), cursor, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[AlertView]{Items: []AlertView{}}
	for i, s := range subs {
		if i == limit {
			out.NextCursor = encodeCursor(subs[i-1].Name)
			break
		}
		out.Items = append(out.Items, alertView(s, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createAlert(w http.ResponseWriter, r *http.Request) {
	var in control.AlertInput
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.changes.CreateAlert(r.Context(), "", in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/alerts/"+url.PathEscape(s.Alert.Name))
	writeJSON(w, http.StatusCreated, alertView(s.Alert, s.NewSecret))
}

func (a *API) getAlert(w http.ResponseWriter, r *http.Request) {
	s, err := a.store.GetAlert(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, alertView(s, false))
}

func (a *API) editAlert(w http.ResponseWriter, r *http.Request) {
	prev, err := a.store.GetAlert(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var in control.AlertInput
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.changes.EditAlert(r.Context(), "", prev, in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, alertView(s.Alert, s.NewSecret))
}

func (a *API) deleteAlert(w http.ResponseWriter, r *http.Request) {
	if err := a.changes.DeleteAlert(r.Context(), "", r.PathValue("name")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// testAlert queues a sample alert.test event to the subscription and
// answers the delivery (202: it is sent by the alert sender).
func (a *API) testAlert(w http.ResponseWriter, r *http.Request) {
	d, err := a.changes.TestAlert(r.Context(), "", r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, alertDeliveryView(d))
}

// listAlertDeliveries lists a subscription's deliveries, newest first.
func (a *API) listAlertDeliveries(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	e, _ := err.(valid.Errors)
	if e == nil {
		e = valid.Errors{}
	}
	var before int64
	if cursor != "" {
		if before, err = strconv.ParseInt(cursor, 10, 64); err != nil || before <= 0 {
			e.Add("cursor", "not a cursor returned by this API")
		}
	}
	if err := e.Err(); err != nil {
		a.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	if _, err := a.store.GetAlert(r.Context(), name); err != nil {
		a.writeError(w, r, err)
		return
	}
	ds, err := a.store.ListAlertDeliveries(r.Context(), name, before, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[AlertDeliveryView]{Items: []AlertDeliveryView{}}
	for i, d := range ds {
		if i == limit {
			out.NextCursor = encodeCursor(strconv.FormatInt(ds[i-1].ID, 10))
			break
		}
		out.Items = append(out.Items, alertDeliveryView(d))
	}
	writeJSON(w, http.StatusOK, out)
}
