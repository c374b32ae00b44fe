package e2e_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to read the replicas' database from the outside

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

const (
	// scaleMailboxes is how many mailboxes the replicas share.
	scaleMailboxes = 60
	// scaleTTL and scaleRenew are the replicas' lease time and renewal
	// interval: shorter than the defaults (15 s, 5 s) to keep the test
	// short; the guarantees are stated in terms of them.
	scaleTTL   = 6 * time.Second
	scaleRenew = time.Second
	// scaleSpread is how far from the fair share a replica may be.
	scaleSpread = 2
	// scaleSettle bounds how long the spread may take to even out.
	scaleSettle = 30 * time.Second
	// scaleGap is the pause between two appends (about 25 messages a
	// second, spread over the mailboxes at random).
	scaleGap = 40 * time.Millisecond
	// scaleMaxMessages bounds the appends of one run.
	scaleMaxMessages = 20000
	// scaleFlowing is how many messages past those appended so far must be
	// recorded for mail to be flowing through the cluster (about 2 s of
	// appends).
	scaleFlowing = 50
)

func scaleMessageID(i int) string { return fmt.Sprintf("scale-%05d@e2e.example.org", i) }

// scaleCluster is several replicas of the real binary on one PostgreSQL.
type scaleCluster struct {
	t      *testing.T
	pg     *testenv.Postgres
	db     *sql.DB
	key    string
	reps   map[string]*service
	token  string
	hooks  *hookListener
	dovect *testenv.Dovecot
}

func (c *scaleCluster) add(id string) *service {
	c.t.Helper()
	s := newService(c.t,
		"MAILTRIGGER_DATABASE_URL="+c.pg.URL(),
		"MAILTRIGGER_SECRET_KEY="+c.key,
		"MAILTRIGGER_REPLICA_ID="+id,
		"MAILTRIGGER_LEASE_TTL="+scaleTTL.String(),
		"MAILTRIGGER_LEASE_RENEW="+scaleRenew.String(),
		"MAILTRIGGER_RUN_LEASE=5s",
		"MAILTRIGGER_RETRY_BASE=200ms",
		"MAILTRIGGER_LOG_LEVEL=debug",
	)
	c.reps[id] = s
	s.start()
	return s
}

func (c *scaleCluster) api(s *service) *client.Client {
	return &client.Client{BaseURL: s.baseURL(), Token: c.token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// holders returns how many unexpired leases each replica holds, by the
// database's clock.
func (c *scaleCluster) holders() (map[string]int, error) {
	rows, err := c.db.Query(`SELECT owner, count(*) FROM mailbox_leases
		WHERE owner <> '' AND expires_at > clock_timestamp() GROUP BY owner`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			return nil, err
		}
		out[o] = n
	}
	return out, rows.Err()
}

// waitSpread waits until exactly the replicas live hold every mailbox,
// each within scaleSpread of its fair share, and returns how long it took.
// On a timeout the replicas dump their goroutines (SIGQUIT) into their
// output before the test fails.
func (c *scaleCluster) waitSpread(s *service, within time.Duration, live ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	share := (scaleMailboxes + len(live) - 1) / len(live)
	var last any
	if testwait.UntilErr(within, func() error {
		h, err := c.holders()
		last = h
		if err != nil {
			last = err
		} else if c.even(h, share, live) {
			return nil
		}
		return errNotYet
	}) == nil {
		return time.Since(start)
	}
	c.dump()
	s.fatalf("waiting for the %d mailboxes spread over %v (%d each ± %d): not within %v; last: %v",
		scaleMailboxes, live, share, scaleSpread, within, last)
	return 0
}

func (c *scaleCluster) even(h map[string]int, share int, live []string) bool {
	total := 0
	for _, n := range h {
		total += n
	}
	if total != scaleMailboxes || len(h) != len(live) {
		return false
	}
	for _, id := range live {
		if n := h[id]; n < share-scaleSpread || n > share+scaleSpread {
			return false
		}
	}
	return true
}

// dump makes every running replica write its goroutines to its output and
// exit (the Go runtime's answer to SIGQUIT), for a failure to explain.
func (c *scaleCluster) dump() {
	for id, s := range c.reps {
		if s.cmd == nil {
			continue
		}
		pid := s.cmd.Process.Pid
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
		s.signal(syscall.SIGCONT) // a stopped one must run to dump
		s.signal(syscall.SIGQUIT)
		exited := "exited"
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			exited = "did not exit within 5 s"
		}
		c.t.Logf("replica %s (pid %d) before SIGQUIT: stat %q wchan %q; %s", id, pid, stat, wchan, exited)
	}
}

// waitAllIdle waits until every mailbox is watched in IDLE, as the API of s
// reports (for the mailboxes of other replicas, from their lease status).
func (c *scaleCluster) waitAllIdle(s *service, within time.Duration) {
	c.t.Helper()
	api := c.api(s)
	waitFor(s, within, "every mailbox idle", func() (bool, any) {
		l, err := api.ListIMAP(context.Background(), 100, "")
		if err != nil {
			return false, err
		}
		notIdle := map[string]string{}
		for _, v := range l.Items {
			if v.Status == nil || v.Status.State != imapconf.StateIdle || v.Status.Replica == "" {
				notIdle[v.Name] = fmt.Sprintf("%+v", v.Status)
			}
		}
		return len(l.Items) == scaleMailboxes && len(notIdle) == 0, notIdle
	})
}

// scaleAppender appends numbered messages to random mailboxes until stopped.
type scaleAppender struct {
	clients  []*imapclient.Client
	addrs    []string
	appended atomic.Int64
	mu       sync.Mutex
	boxOf    map[int]string // message number → the address it went to
	err      error
	stop     chan struct{}
	done     chan struct{}
}

func (a *scaleAppender) run() {
	defer close(a.done)
	rng := mrand.New(mrand.NewPCG(7, 11))
	for i := 1; i <= scaleMaxMessages; i++ {
		select {
		case <-a.stop:
			return
		case <-time.After(scaleGap):
		}
		k := rng.IntN(len(a.clients))
		raw := mailMessage(scaleMessageID(i), a.addrs[k], fmt.Sprintf("Order %05d", i), fmt.Sprintf("Order number %d.", i))
		if _, err := appendMessage(a.clients[k], raw); err != nil {
			a.err = fmt.Errorf("appending message %d to %s: %w", i, a.addrs[k], err)
			return
		}
		a.mu.Lock()
		a.boxOf[i] = a.addrs[k]
		a.mu.Unlock()
		a.appended.Store(int64(i))
	}
}

// missing lists the appended messages not recorded, with their mailboxes.
func (a *scaleAppender) missing(db *sql.DB, n int) string {
	rows, err := db.Query(`SELECT message_id FROM messages`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		seen[id] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for i := 1; i <= n; i++ {
		if !seen[scaleMessageID(i)] {
			box, _, _ := strings.Cut(a.boxOf[i], "@")
			var cp, token int64
			var owner string
			db.QueryRow(`SELECT CAST(substr(s.value, 12) AS BIGINT), l.owner, l.token FROM imap_configs c JOIN checkpoints s ON s.imap_id = c.id
				JOIN mailbox_leases l ON l.imap_id = c.id WHERE c.name = $1`, box).Scan(&cp, &owner, &token)
			var uids []string
			if rows, err := db.Query(`SELECT m.uid, m.message_id, m.replica, m.lease_token FROM messages m JOIN imap_configs c
				ON c.id = m.imap_id WHERE c.name = $1 ORDER BY m.id`, box); err == nil {
				for rows.Next() {
					var uid, tok int64
					var id, rep string
					rows.Scan(&uid, &id, &rep, &tok)
					uids = append(uids, fmt.Sprintf("%d:%s:%s/%d", uid, strings.TrimSuffix(id, "@e2e.example.org"), rep, tok))
				}
				rows.Close()
			}
			out = append(out, fmt.Sprintf("%s in %s (checkpoint %d, lease %s/%d, recorded %v)", scaleMessageID(i), box, cp, owner, token, uids))
		}
	}
	return strings.Join(out, ", ")
}

// TestScaleOut runs replicas of the real binary on one PostgreSQL, reading
// 60 mailboxes of a real Dovecot while mail arrives, through every event
// issue 8 names: three replicas spread the mailboxes evenly and a fourth
// joining evens them out again; a SIGKILLed replica's mailboxes move within
// the lease time plus 5 s; a SIGSTOPped replica is fenced and rejoins; the
// database restarts; every replica is restarted in turn. At the end every
// message is recorded exactly once, every (message, flow) has exactly one
// run and every run is delivered, and no mailbox's messages go back to an
// older lease token (a replica that lost a lease recorded nothing after).
func TestScaleOut(t *testing.T) {
	d := testenv.StartDovecot(t)
	pg := testenv.StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var keyBytes [32]byte
	rand.Read(keyBytes[:])
	c := &scaleCluster{t: t, pg: pg, db: db, key: base64.StdEncoding.EncodeToString(keyBytes[:]),
		reps: map[string]*service{}, hooks: newHookListener(t), dovect: d}

	// r1 alone first: the mailboxes and flows are created through it.
	r1 := c.add("r1")
	c.token = strings.TrimSpace(r1.cli("token", "create", "e2e"))
	api := c.api(r1)
	app := &scaleAppender{stop: make(chan struct{}), done: make(chan struct{}), boxOf: map[int]string{}}
	for i := range scaleMailboxes {
		name := fmt.Sprintf("box%02d", i)
		addr := d.AddUser(t, name, "pw-"+name)
		createMailbox(r1, api, d, name, addr, imapconf.BacklogNew)
		path := "/scale/" + name
		url := c.hooks.handle(path, "", nil)
		secret := createFlow(r1, api, flowSpec{name: "flow_" + name, imap: name, subject: "Order", match: "prefix", url: url})
		c.hooks.setSecret(path, secret)
		cl := d.DialIMAPS(t, addr, nil)
		t.Cleanup(func() { cl.Close() })
		app.clients, app.addrs = append(app.clients, cl), append(app.addrs, addr)
	}
	c.waitSpread(r1, scaleSettle, "r1")
	c.add("r2")
	r3 := c.add("r3")
	took := c.waitSpread(r1, scaleSettle, "r1", "r2", "r3")
	t.Logf("3 replicas: spread evenly %v after the third started", took.Round(10*time.Millisecond))
	c.waitAllIdle(r1, scaleSettle)

	r4 := c.add("r4")
	took = c.waitSpread(r1, scaleSettle, "r1", "r2", "r3", "r4")
	t.Logf("a 4th replica joined: spread evenly again after %v", took.Round(10*time.Millisecond))
	c.waitAllIdle(r4, scaleSettle)

	// A change made through one replica reaches the replica reading the
	// mailbox within a second: a mailbox of r2's disabled through r1 stops
	// its watcher on r2; enabled again through r4, some replica reads it
	// again.
	var box string
	if err := db.QueryRow(`SELECT c.name FROM mailbox_leases l JOIN imap_configs c ON c.id = l.imap_id
		WHERE l.owner = 'r2' ORDER BY c.name LIMIT 1`).Scan(&box); err != nil {
		t.Fatal(err)
	}
	r2 := c.reps["r2"]
	before := watcherCount(r2)
	setEnabled(r1, c.api(r1), box, false)
	changed := time.Now()
	waitFor(r2, 2*time.Second, box+"'s watcher stopped on r2", func() (bool, any) {
		n := watcherCount(r2)
		return n == before-1, n
	})
	t.Logf("%s disabled through r1: its watcher on r2 stopped %v later", box, time.Since(changed).Round(time.Millisecond))
	setEnabled(r4, c.api(r4), box, true)
	c.waitSpread(r1, scaleSettle, "r1", "r2", "r3", "r4")
	c.waitAllIdle(r4, scaleSettle)

	// Mail arrives from now on, through every event below.
	go app.run()
	defer func() {
		select {
		case <-app.done:
		default:
			close(app.stop)
			<-app.done
		}
	}()
	// mailFlows waits until every message appended so far and scaleFlowing
	// more are recorded: mail reaches the cluster as it stands.
	mailFlows := func(when string) {
		want := int(app.appended.Load()) + scaleFlowing
		waitFor(r1, scaleSettle, "mail flowing "+when, func() (bool, any) {
			var got int
			err := db.QueryRow(`SELECT count(*) FROM messages`).Scan(&got)
			return err == nil && got >= want, fmt.Sprintf("%d of %d recorded, %d appended (%v)", got, want, app.appended.Load(), err)
		})
	}
	mailFlows("before the first kill")

	// SIGKILL r2: its mailboxes move within the lease time plus 5 s.
	c.reps["r2"].kill()
	took = c.waitSpread(r1, scaleTTL+5*time.Second, "r1", "r3", "r4")
	t.Logf("r2 killed: its mailboxes were taken over after %v (lease time %v)", took.Round(10*time.Millisecond), scaleTTL)
	c.waitAllIdle(r1, scaleSettle)

	// SIGSTOP r3 for longer than the lease time: the others take its
	// mailboxes; on SIGCONT its stale watchers are fenced and it rejoins.
	r3.signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	took = c.waitSpread(r1, scaleTTL+5*time.Second, "r1", "r4")
	t.Logf("r3 stopped: its mailboxes were taken over after %v", took.Round(10*time.Millisecond))
	time.Sleep(time.Until(stoppedAt.Add(scaleTTL + 3*time.Second)))
	r3.signal(syscall.SIGCONT)
	took = c.waitSpread(r1, scaleSettle, "r1", "r3", "r4")
	t.Logf("r3 continued after %v stopped: rejoined with its share after %v", time.Since(stoppedAt).Round(time.Second), took.Round(10*time.Millisecond))
	c.waitAllIdle(r1, scaleSettle)

	// PostgreSQL restarted under load, twice: down for less than the lease
	// time (the leases survive, the writes in flight fail and are redone),
	// then for longer (every replica stops its watchers, the leases expire,
	// and the replicas claim them again once the database is back).
	for _, down := range []time.Duration{2 * time.Second, scaleTTL + 2*time.Second} {
		pg.Restart(t, down)
		took = c.waitSpread(r1, scaleSettle, "r1", "r3", "r4")
		c.waitAllIdle(r1, scaleSettle)
		t.Logf("PostgreSQL restarted (down %v): every mailbox held and idle again %v after it was back", down, took.Round(10*time.Millisecond))
	}

	// A rolling restart, one replica at a time, graceful: its mailboxes move
	// at once (released, not left to expire).
	for _, id := range []string{"r1", "r3", "r4"} {
		s := c.reps[id]
		s.stop()
		start := time.Now()
		others := []string{}
		for _, o := range []string{"r1", "r3", "r4"} {
			if o != id {
				others = append(others, o)
			}
		}
		c.waitSpread(r4, scaleTTL, others...)
		moved := time.Since(start)
		if id == "r4" {
			c.waitSpread(r1, scaleTTL, others...)
		}
		s.start()
		took = c.waitSpread(s, scaleSettle, "r1", "r3", "r4")
		t.Logf("rolling restart of %s: its mailboxes moved within %v of its stop; spread again %v after its start",
			id, moved.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	}
	c.waitAllIdle(r1, scaleSettle)
	mailFlows("after the rolling restart")

	close(app.stop)
	<-app.done
	if app.err != nil {
		t.Fatal(app.err)
	}
	n := int(app.appended.Load())
	t.Logf("%d messages appended while the replicas were killed, stopped, restarted and the database restarted", n)

	// Every message recorded exactly once, each with one run, all delivered.
	waitFor(r1, time.Minute, "every appended message recorded", func() (bool, any) {
		var got int
		err := db.QueryRow(`SELECT count(*) FROM messages`).Scan(&got)
		if err == nil && got >= n {
			return true, nil
		}
		return false, fmt.Sprintf("%d of %d (%v); missing: %s", got, n, err, app.missing(db, n))
	})
	checkEachRecordedOnce(t, db, n, scaleMessageID)
	var dupRuns, runs, noRun int
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT flow_id, message_id FROM runs GROUP BY flow_id, message_id HAVING count(*) > 1) d`).Scan(&dupRuns); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM runs`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.message_id = m.id)`).Scan(&noRun); err != nil {
		t.Fatal(err)
	}
	if dupRuns != 0 || runs != n || noRun != 0 {
		t.Errorf("runs: %d (message, flow) pairs with more than one run, %d runs for %d messages, %d messages without a run", dupRuns, runs, n, noRun)
	}
	waitFor(r1, time.Minute, "every run delivered", func() (bool, any) {
		var left int
		err := db.QueryRow(`SELECT count(*) FROM runs WHERE status <> 'delivered'`).Scan(&left)
		return err == nil && left == 0, fmt.Sprintf("%d not delivered (%v)", left, err)
	})
	delivered := deliveredIDs(c.hooks)
	if len(delivered) != n {
		t.Errorf("the listener got %d distinct runs, want %d", len(delivered), n)
	}

	// Fencing: within each mailbox, messages in the order they were
	// recorded never go back to an older lease token; every message names
	// the replica and token it was recorded under.
	var backwards, unfenced int
	if err := db.QueryRow(`SELECT count(*) FROM messages a JOIN messages b
		ON a.imap_id = b.imap_id AND a.id < b.id AND a.lease_token > b.lease_token`).Scan(&backwards); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM messages WHERE replica = '' OR lease_token = 0`).Scan(&unfenced); err != nil {
		t.Fatal(err)
	}
	if backwards != 0 || unfenced != 0 {
		t.Errorf("fencing: %d pairs of messages recorded under an older lease token after a newer one, %d without a lease", backwards, unfenced)
	}
	byReplica := map[string]int{}
	rows, err := db.Query(`SELECT replica, count(*) FROM messages GROUP BY replica`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		var k int
		if err := rows.Scan(&r, &k); err != nil {
			t.Fatal(err)
		}
		byReplica[r] = k
	}
	rows.Close()
	t.Logf("messages recorded by replica: %v; r3 refused %d write(s) after losing leases while stopped",
		byReplica, strings.Count(r3.out.Last(outputKeep), "mailbox taken over by another replica"))

	// The cluster view lists the replicas: r2 silent, the others live.
	var view store.ClusterView
	if err := c.api(r4).Do(context.Background(), http.MethodGet, "/api/v1/cluster", nil, &view); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	var ids []string
	for _, r := range view.Replicas {
		live[r.ID] = r.Live
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	if !view.Leasing || view.Self != "r4" || !live["r1"] || !live["r3"] || !live["r4"] || live["r2"] {
		t.Errorf("cluster view: self %q leasing %v, replicas %v live %v", view.Self, view.Leasing, ids, live)
	}
}

// TestSQLiteRefusesSecondProcess: a second serve on the same SQLite data
// directory exits at once with a message naming the first one's pid and
// the way to run several replicas.
func TestSQLiteRefusesSecondProcess(t *testing.T) {
	first := newService(t)
	first.start()
	second := newService(t)
	second.dataDir = first.dataDir
	for i, kv := range second.env {
		if strings.HasPrefix(kv, "MAILTRIGGER_DATA_DIR=") {
			second.env[i] = "MAILTRIGGER_DATA_DIR=" + first.dataDir
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve")
	cmd.Env = second.env
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err == nil {
		t.Fatalf("a second process on the same SQLite data directory started; output:\n%s", out)
	}
	want := fmt.Sprintf("another mailtrigger (pid %d) is serving the SQLite database", first.pid())
	if !strings.Contains(out, want) || !strings.Contains(out, "MAILTRIGGER_DATABASE_URL") {
		t.Errorf("the second process said:\n%s\nwant it to contain %q and how to run several replicas", out, want)
	}
	// The first one is unharmed and serves on.
	first.stop()
	first.start()
}

// watcherCount is the number of watchers service s runs, from its metrics.
func watcherCount(s *service) int {
	s.t.Helper()
	resp, err := http.Get(s.baseURL() + "/metrics")
	if err != nil {
		s.fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "mailtrigger_watchers{"); ok {
			_, v, _ := strings.Cut(rest, "} ")
			k, _ := strconv.Atoi(strings.TrimSpace(v))
			n += k
		}
	}
	return n
}

// setEnabled switches configuration name on or off through api, sending
// back what it read (the API ignores the read-only fields).
func setEnabled(s *service, api *client.Client, name string, on bool) {
	s.t.Helper()
	var v map[string]any
	if err := api.Do(context.Background(), http.MethodGet, "/api/v1/imap/"+name, nil, &v); err != nil {
		s.fatalf("reading %s: %v", name, err)
	}
	delete(v, "status")
	v["enabled"] = on
	if err := api.Do(context.Background(), http.MethodPut, "/api/v1/imap/"+name, v, nil); err != nil {
		s.fatalf("switching %s to enabled=%v: %v", name, on, err)
	}
}
