package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/distribworks/dkron/v4/types"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/buntdb"
	"google.golang.org/protobuf/proto"
)

// The catch-up guard: the last word on a run the catch-up watcher
// (nodeside/catchup.py) wants to start for a due time the cluster missed.
//
// The watcher works out what an outage swallowed; whether starting it now
// would serve a due time twice depends on things only the leader's own
// process sees at the moment of the start: whether this node leads and its
// scheduler runs, whether that scheduler has fired the job since it started
// or is about to, and whether a run of the job has started since the due time
// (one an earlier leader dispatched, or one an earlier leader's watcher
// started). The guard checks all of them and starts the run in this process,
// as Dkron's own RunJob does on the leader, so no other leader's scheduler or
// watcher can come in between a check made here and the start.
//
// It is served on the node's socket only (`POST /iac/v1/catch-up/<job>?due=`):
// its callers are the node's own processes.

const (
	catchUpPath = "/iac/v1/catch-up/"

	// catchUpAhead: a catch-up starts only this long before the scheduler's
	// own next run of the job at the latest. A due time is a whole second;
	// two runs closer than this serve one due time twice.
	catchUpAhead = time.Second

	// deferredAhead: a deferred catch-up (below) still starts when the
	// scheduler's following run is this far away (timers are a few ms late).
	deferredAhead = 900 * time.Millisecond

	// servedSlack: a run that started this long before the due time still
	// serves it (Dkron starts a run a few milliseconds after its due time; the
	// run before it started a whole interval earlier).
	servedSlack = 500 * time.Millisecond
)

// catchUpVerdict is the guard's answer: "started", or why not.
type catchUpVerdict struct {
	Job     string    `json:"job"`
	Due     time.Time `json:"due"`
	Verdict string    `json:"verdict"`
	Detail  string    `json:"detail,omitempty"`
	Group   int64     `json:"group,omitempty"`
}

// catchUpGuard answers the watcher, one request at a time.
type catchUpGuard struct {
	agent  *dkron.Agent
	logger *logrus.Entry

	mu sync.Mutex
	// started: per job, the execution group of the catch-up started last (its
	// execution shows in the store only once the node running it reports).
	started map[string]int64
	// leads and run are the agent's IsLeader and Run (tests replace them).
	leads func() bool
	run   func(job string, ex *dkron.Execution)
}

func newCatchUpGuard(agent *dkron.Agent, logger *logrus.Entry) *catchUpGuard {
	g := &catchUpGuard{agent: agent, logger: logger, started: map[string]int64{}, leads: agent.IsLeader}
	g.run = func(job string, ex *dkron.Execution) {
		if _, err := agent.Run(job, ex); err != nil {
			logger.WithError(err).WithField("job", job).Error("catch-up: the run did not start")
		}
	}
	return g
}

// scheduleView is what the guard reads of the leader's scheduler.
type scheduleView struct {
	leads   bool
	started bool
	// found: the scheduler holds the job; next and prev are its entry's, after
	// the run the schedule has after next.
	found             bool
	next, prev, after time.Time
}

// decide is the guard's rule, apart from where its facts come from. A missed
// due time whose scheduler runs the job within the second is not started then
// (two runs less than a second apart), but "deferred" to a second after that
// run, when the run after it is a second away or more (an @every 2s job: half
// way); a schedule too dense for that leaves it to the scheduler ("imminent").
func decide(view scheduleView, due, now time.Time, startedSince []time.Time) (string, string) {
	switch {
	case !view.leads:
		return "not-leading", "this node does not lead: the leader's watcher decides"
	case !view.started:
		return "no-scheduler", "the scheduler has not started yet (Dkron starts it after a Raft barrier)"
	case !view.found:
		return "not-scheduled", "the scheduler does not hold the job (disabled, a child, or removed)"
	case !view.prev.IsZero():
		return "scheduled-run", "the scheduler has run the job since it started: that run served the outage"
	}
	if at, ok := servedBy(startedSince, due, time.Time{}); ok {
		return "served", "a run started at " + stamp(at)
	}
	if view.next.Sub(now) >= catchUpAhead {
		return "started", ""
	}
	if view.after.Sub(view.next) < 2*catchUpAhead {
		return "imminent", "the scheduler runs the job at " + stamp(view.next) + ", too close to its next run for a catch-up between"
	}
	return "deferred", "the scheduler runs the job at " + stamp(view.next) + "; the catch-up follows at " + stamp(deferredTo(view))
}

// decideDeferred is the rule when a deferred catch-up is due: the scheduler
// fired once, at fire, and the next run is far enough.
func decideDeferred(view scheduleView, due, fire, now time.Time, startedSince []time.Time) (string, string) {
	switch {
	case !view.leads:
		return "not-leading", "this node lost the leadership before the deferred catch-up"
	case !view.started || !view.found || !view.prev.Equal(fire):
		return "scheduled-run", "the scheduler's runs are not the ones the catch-up was deferred for"
	case view.next.Sub(now) < deferredAhead:
		return "imminent", "the scheduler runs the job at " + stamp(view.next)
	}
	if at, ok := servedBy(startedSince, due, fire.Add(-servedSlack/5)); ok {
		return "served", "a run started at " + stamp(at)
	}
	return "started", ""
}

// deferredTo is when a deferred catch-up starts: a second after the
// scheduler's run.
func deferredTo(view scheduleView) time.Time { return view.next.Add(catchUpAhead) }

// servedBy is a run that started at or after the due time (less the slack)
// and, unless before is zero, before it.
func servedBy(starts []time.Time, due, before time.Time) (time.Time, bool) {
	for _, at := range starts {
		if !at.Before(due.Add(-servedSlack)) && (before.IsZero() || at.Before(before)) {
			return at, true
		}
	}
	return time.Time{}, false
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// scheduler is the agent's scheduler. Dkron keeps it in an unexported field
// and offers no accessor; the field's name and type are Dkron 4.0.5's (the
// only release this agent is built from), pinned by a test.
func scheduler(agent *dkron.Agent) *dkron.Scheduler {
	field := reflect.ValueOf(agent).Elem().FieldByName("sched")
	if !field.IsValid() || field.IsNil() {
		return nil
	}
	return (*dkron.Scheduler)(field.UnsafePointer())
}

func (g *catchUpGuard) view(job string) scheduleView {
	view := scheduleView{leads: g.leads()}
	sched := scheduler(g.agent)
	if sched == nil || !sched.Started() {
		return view
	}
	view.started = true
	for _, entry := range sched.Cron.Entries() {
		if j, ok := entry.Job.(*dkron.Job); ok && j.Name == job {
			view.found, view.next, view.prev = true, entry.Next, entry.Prev
			view.after = entry.Schedule.Next(entry.Next)
		}
	}
	return view
}

// startsSince are when the job's runs the store holds began (each one's
// execution group: when its dispatch began), and the catch-up this guard
// started last. The store keeps a run from its first report, so a run an
// earlier leader dispatched shows once it runs.
func (g *catchUpGuard) startsSince(job string) []time.Time {
	var starts []time.Time
	if group, ok := g.started[job]; ok {
		starts = append(starts, time.Unix(0, group))
	}
	store, ok := g.agent.Store.(*dkron.Store)
	if !ok {
		if g.agent.Store != nil {
			executions, _ := g.agent.Store.GetExecutions(job, &dkron.ExecutionOptions{})
			for _, ex := range executions {
				starts = append(starts, time.Unix(0, ex.Group))
			}
		}
		return starts
	}
	// The job's keys alone, in key order (Dkron's GetExecutions walks every key
	// of the store: with thousands of jobs, far too many for each catch-up).
	prefix := "executions:" + job + ":"
	_ = store.DB().View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", prefix, func(key, value string) bool {
			if !strings.HasPrefix(key, prefix) {
				return false
			}
			var execution types.Execution
			if proto.Unmarshal([]byte(value), &execution) != nil && json.Unmarshal([]byte(value), &execution) != nil {
				return true
			}
			starts = append(starts, time.Unix(0, execution.GetGroup()))
			return true
		})
	})
	return starts
}

// catchUp decides, and starts the run when the verdict is "started" (or
// later, "deferred").
func (g *catchUpGuard) catchUp(job string, due time.Time) catchUpVerdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	view := g.view(job)
	verdict, detail := decide(view, due, time.Now(), g.startsSince(job))
	answer := catchUpVerdict{Job: job, Due: due, Verdict: verdict, Detail: detail}
	switch verdict {
	case "started":
		answer.Group = g.start(job)
	case "deferred":
		at := deferredTo(view)
		g.started[job] = at.UnixNano() // asked again meanwhile: served
		answer.Group = at.UnixNano()
		time.AfterFunc(time.Until(at), func() { g.deferred(job, due, view.next) })
	}
	g.logger.WithFields(logrus.Fields{"job": job, "due": due, "verdict": verdict}).Info("catch-up: " + detail)
	return answer
}

// start starts the run now; its execution group.
func (g *catchUpGuard) start(job string) int64 {
	ex := dkron.NewExecution(job)
	g.started[job] = ex.Group
	go g.run(job, ex)
	return ex.Group
}

// deferred is a deferred catch-up's moment: started if still right.
func (g *catchUpGuard) deferred(job string, due, fire time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The planned start stays in g.started whatever happens: nothing else may
	// start for this due time; decideDeferred counts only runs before fire.
	verdict, detail := decideDeferred(g.view(job), due, fire, time.Now(), g.startsSince(job))
	if verdict == "started" {
		g.start(job)
		detail = "the deferred catch-up started"
	}
	g.logger.WithFields(logrus.Fields{"job": job, "due": due, "verdict": verdict}).Info("catch-up: " + detail)
}

// ServeHTTP: POST /iac/v1/catch-up/<job>?due=<RFC 3339>. 202 when the run
// started or is deferred, 409 with the reason when it did not; 400 for a request without a
// job or a due time.
func (g *catchUpGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	job := strings.TrimPrefix(r.URL.Path, catchUpPath)
	due, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("due"))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case r.Method != http.MethodPost:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	case job == "" || strings.Contains(job, "/") || err != nil:
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "POST " + catchUpPath + "<job>?due=<RFC 3339 time>"})
		return
	}
	answer := g.catchUp(job, due)
	w.WriteHeader(statusOf(answer.Verdict))
	_ = json.NewEncoder(w).Encode(answer)
}

// statusOf: 202 for a run started now or deferred (its group is when it
// starts), 409 for every reason not to.
func statusOf(verdict string) int {
	if verdict == "started" || verdict == "deferred" {
		return http.StatusAccepted
	}
	return http.StatusConflict
}
