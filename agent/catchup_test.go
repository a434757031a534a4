package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/sirupsen/logrus"
)

func TestTheGuardStartsOnlyWhatNoSchedulerServesOrIsAboutTo(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 10, 300_000_000, time.UTC)
	due := time.Date(2026, 12, 7, 12, 0, 8, 0, time.UTC)
	ready := scheduleView{leads: true, started: true, found: true, next: now.Add(1700 * time.Millisecond)}
	cases := []struct {
		name   string
		view   scheduleView
		starts []time.Time
		want   string
	}{
		{"missed, the scheduler's run far enough", ready, []time.Time{due.Add(-2 * time.Second)}, "started"},
		{"not the leader", scheduleView{}, nil, "not-leading"},
		{"leader, scheduler not started", scheduleView{leads: true}, nil, "no-scheduler"},
		{"the scheduler does not hold the job", scheduleView{leads: true, started: true}, nil, "not-scheduled"},
		{"the scheduler ran it since it started", withPrev(ready, now.Add(-300*time.Millisecond)), nil, "scheduled-run"},
		{"the scheduler runs it within the second, too dense to fit one between", withNext(ready, now.Add(900*time.Millisecond)), nil, "imminent"},
		{"the scheduler runs it within the second, 2 s before its next", withAfter(withNext(ready, now.Add(700*time.Millisecond)), now.Add(2700*time.Millisecond)), nil, "deferred"},
		{"an @every 1s job has no room for one", withAfter(withNext(ready, now.Add(700*time.Millisecond)), now.Add(1700*time.Millisecond)), nil, "imminent"},
		{"an earlier leader's run started after the due time", ready, []time.Time{due.Add(5 * time.Millisecond)}, "served"},
		{"a run started just before the due time", ready, []time.Time{due.Add(-400 * time.Millisecond)}, "served"},
	}
	for _, c := range cases {
		if got, _ := decide(c.view, due, now, c.starts); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestADeferredCatchUpIsAcceptedLikeAStartedOne(t *testing.T) {
	for verdict, want := range map[string]int{"started": 202, "deferred": 202, "imminent": 409, "served": 409} {
		if got := statusOf(verdict); got != want {
			t.Errorf("%s: %d, want %d", verdict, got, want)
		}
	}
}

func withPrev(v scheduleView, at time.Time) scheduleView  { v.prev = at; return v }
func withAfter(v scheduleView, at time.Time) scheduleView { v.after = at; return v }

// A deferred catch-up starts a second after the scheduler's run, only if that
// run alone came since the due time and the next one is far enough.
func TestADeferredCatchUpStartsOnlyIfTheSchedulerRanJustOnce(t *testing.T) {
	due := time.Date(2026, 12, 7, 12, 0, 8, 0, time.UTC)
	fire := due.Add(4 * time.Second)
	now := fire.Add(time.Second + 3*time.Millisecond)
	after := scheduleView{leads: true, started: true, found: true, prev: fire, next: fire.Add(2 * time.Second)}
	own := fire.Add(4 * time.Millisecond) // the scheduler's run itself
	cases := []struct {
		name   string
		view   scheduleView
		starts []time.Time
		want   string
	}{
		{"the scheduler ran once, its next is a second away", after, []time.Time{due.Add(-2 * time.Second), own}, "started"},
		{"leadership lost meanwhile", scheduleView{}, nil, "not-leading"},
		{"the scheduler has not run (a new scheduler)", withPrev(after, time.Time{}), nil, "scheduled-run"},
		{"a timer late enough for the next run", after, nil, "imminent"},
		{"another run since the due time", after, []time.Time{due.Add(time.Second), own}, "served"},
	}
	cases[3].view.next = now.Add(800 * time.Millisecond)
	for _, c := range cases {
		if got, _ := decideDeferred(c.view, due, fire, now, c.starts); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
func withNext(v scheduleView, at time.Time) scheduleView { v.next = at; return v }

// The guard reads Dkron's scheduler from an unexported field of the agent:
// its name and type are pinned here, with a real scheduler holding a job.
func TestTheGuardReadsTheAgentsOwnScheduler(t *testing.T) {
	field, ok := reflect.TypeOf(dkron.Agent{}).FieldByName("sched")
	if !ok || field.Type != reflect.TypeOf(&dkron.Scheduler{}) {
		t.Fatalf("dkron.Agent has no field sched *dkron.Scheduler: %v", field)
	}
	agent := dkron.NewAgent(dkron.DefaultConfig())
	if scheduler(agent) != nil {
		t.Fatal("a scheduler before the agent started")
	}
	logger := logrus.NewEntry(logrus.New())
	sched := dkron.NewScheduler(logger)
	value := reflect.ValueOf(agent).Elem().FieldByName("sched")
	reflect.NewAt(value.Type(), unsafe.Pointer(value.UnsafeAddr())).Elem().Set(reflect.ValueOf(sched))
	if scheduler(agent) != sched {
		t.Fatal("scheduler() is not the agent's")
	}

	guard := newCatchUpGuard(agent, logger)
	guard.leads = func() bool { return true }
	var ran []string
	guard.run = func(job string, _ *dkron.Execution) { ran = append(ran, job) }
	post := func(job string, due time.Time) (int, catchUpVerdict) {
		request := httptest.NewRequest(http.MethodPost, catchUpPath+job+"?due="+due.Format(time.RFC3339Nano), nil)
		response := httptest.NewRecorder()
		guard.ServeHTTP(response, request)
		var answer catchUpVerdict
		_ = json.Unmarshal(response.Body.Bytes(), &answer)
		return response.Code, answer
	}
	due := time.Now().Add(-3 * time.Second)
	if code, answer := post("hourly", due); code != http.StatusConflict || answer.Verdict != "no-scheduler" {
		t.Fatalf("before the scheduler started: %d %+v", code, answer)
	}
	if err := sched.Start([]*dkron.Job{{Name: "hourly", Schedule: "@every 1h"}}, agent); err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()
	if code, answer := post("other", due); code != http.StatusConflict || answer.Verdict != "not-scheduled" {
		t.Fatalf("a job the scheduler does not hold: %d %+v", code, answer)
	}
	code, answer := post("hourly", due)
	if code != http.StatusAccepted || answer.Verdict != "started" || answer.Group == 0 {
		t.Fatalf("a missed run with the scheduler's next an hour away: %d %+v", code, answer)
	}
	// Asked again before the run shows in the store: the guard remembers its own start.
	if code, answer := post("hourly", due); code != http.StatusConflict || answer.Verdict != "served" {
		t.Fatalf("the same due time again: %d %+v", code, answer)
	}
	time.Sleep(50 * time.Millisecond)
	if len(ran) != 1 || ran[0] != "hourly" {
		t.Fatalf("runs started: %v", ran)
	}
	if code, _ := post("", due); code != http.StatusBadRequest {
		t.Fatalf("no job: %d", code)
	}
}

// A run in Dkron's store serves a due time it started after; only the job's
// own runs count (another job's name may begin with its name).
func TestTheGuardReadsTheJobsOwnRunsFromTheStore(t *testing.T) {
	logger := logrus.NewEntry(logrus.New())
	store, err := dkron.NewStore(logger)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Shutdown() }()
	at := time.Date(2026, 12, 7, 12, 0, 8, 4_000_000, time.UTC)
	for job, started := range map[string]time.Time{"tick": at, "tick2": at.Add(time.Hour)} {
		execution := &dkron.Execution{JobName: job, Group: started.UnixNano(), StartedAt: started, NodeName: "n1"}
		if _, err := store.SetExecution(execution); err != nil {
			t.Fatal(err)
		}
	}
	agent := dkron.NewAgent(dkron.DefaultConfig())
	agent.Store = store
	guard := newCatchUpGuard(agent, logger)
	starts := guard.startsSince("tick")
	if len(starts) != 1 || !starts[0].Equal(at) {
		t.Fatalf("tick's runs: %v", starts)
	}
	if len(guard.startsSince("tock")) != 0 {
		t.Fatal("runs of a job that never ran")
	}
}
