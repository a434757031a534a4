"""The catch-up watcher's decisions and the schedule arithmetic under them (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from components.node_config import agent_command
from components.spec import ClusterSpec
from nodeside.catchup import OFF_KEY, WINDOW_KEY, Notes, catch_up, decide, parse_time
from nodeside.schedule import next_due

UTC = UTC
DAY = 86400.0


def at(text: str) -> datetime:
    return (
        datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)
    )


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "due"),
    [
        ("@daily", "", "2026-11-30T23:59:58", "2026-12-01T00:00:00"),
        ("0 30 2 * * *", "", "2026-12-01T02:30:00", "2026-12-02T02:30:00"),  # strictly after
        ("*/15 * * * * *", "", "2026-12-01T10:00:01", "2026-12-01T10:00:15"),
        ("0 0 9 * * mon-fri", "", "2026-12-04T09:00:00", "2026-12-07T09:00:00"),  # Friday -> Monday
        ("0 0 0 13 * fri", "", "2026-12-01T00:00:00", "2026-12-04T00:00:00"),  # day 13 OR a Friday
        ("0 0 0 13 * *", "", "2026-12-01T00:00:00", "2026-12-13T00:00:00"),  # a star day-of-week: AND
        ("@monthly", "", "2026-12-15T00:00:00", "2027-01-01T00:00:00"),
        ("@daily", "America/New_York", "2026-12-01T03:00:00", "2026-12-01T05:00:00"),  # midnight there
        ("TZ=Europe/Paris 0 0 2 * * *", "America/New_York", "2026-12-01T00:00:00", "2026-12-01T01:00:00"),
        ("@every 1m30s", "", "2026-12-01T00:00:00.700", "2026-12-01T00:01:30"),
        ("@at 2027-01-01T00:00:00Z", "", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_next_due_follows_dkrons_reading_of_each_schedule_form(
    schedule: str, zone: str, after: str, due: str
) -> None:
    assert next_due(schedule, "report", at(after), zone) == at(due)


def test_a_schedule_that_never_falls_due_again_has_no_next_time() -> None:
    now = at("2026-12-01T00:00:00")
    assert next_due("@manually", "report", now) is None
    assert next_due("@at 2026-01-01T00:00:00Z", "report", now) is None
    assert next_due("0 0 0 30 2 *", "report", now) is None  # February 30th


def test_hashed_fields_fall_due_where_dkron_puts_them() -> None:
    # Dkron replaces '~' by the sum of the name's characters, per field: 'ab' = 195 -> minute 15, hour 3.
    assert next_due("0 ~ ~ * * *", "ab", at("2026-12-01T00:00:00")) == at("2026-12-01T03:15:00")


def test_dkron_times_parse_with_nanoseconds_and_go_zero_is_none() -> None:
    assert parse_time("2026-12-01T02:03:04.123456789Z") == at("2026-12-01T02:03:04.123456")
    assert parse_time("2026-12-01T02:03:04.5+01:00") == at("2026-12-01T01:03:04.5")
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(None) is None


LEADER_SINCE = at("2026-12-01T12:00:00")
NOW = LEADER_SINCE + timedelta(seconds=0.3)
OUTAGE_FROM = LEADER_SINCE - timedelta(seconds=20)


def job(schedule: str = "@daily", due: datetime | None = None, **fields: Any) -> dict[str, Any]:
    next_text = (due or LEADER_SINCE - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    return {"name": "report", "schedule": schedule, "next": next_text, "metadata": {}, **fields}


def test_a_run_due_while_there_was_no_leader_is_started() -> None:
    due = LEADER_SINCE - timedelta(seconds=5)
    decision = decide(job("0 55 11 * * *", due), NOW, LEADER_SINCE, OUTAGE_FROM, DAY)
    assert decision is not None
    assert (decision.action, decision.due, decision.in_window) == ("run", due, due)


def test_a_run_due_once_the_leader_was_back_is_left_to_the_leader() -> None:
    assert decide(job(due=LEADER_SINCE + timedelta(seconds=1)), NOW, LEADER_SINCE, OUTAGE_FROM, DAY) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"disabled": True},
        {"parent_job": "extract"},
        {"schedule": "@manually"},
        {"metadata": {OFF_KEY: "off"}},
    ],
)
def test_jobs_that_do_not_want_a_catch_up_get_none(fields: dict[str, Any]) -> None:
    assert decide({**job(), **fields}, NOW, LEADER_SINCE, OUTAGE_FROM, DAY) is None


def test_a_next_time_from_long_before_the_outage_is_stale_not_missed() -> None:
    """Re-enabled jobs keep the `next` they had when disabled: no outage lost that run."""
    stale = OUTAGE_FROM - timedelta(hours=3)
    assert decide(job(due=stale), NOW, LEADER_SINCE, OUTAGE_FROM, DAY) is None
    # Without a record of the last working leader (a first start), the window alone decides.
    decision = decide(job(due=stale), NOW, LEADER_SINCE, None, DAY)
    assert decision is not None
    assert decision.action == "run"


def test_a_week_long_outage_runs_a_daily_job_once_for_its_first_due_time_in_the_window() -> None:
    week_ago = at("2026-11-24T00:00:00")
    decision = decide(job("@daily", week_ago), NOW, LEADER_SINCE, None, DAY)
    assert decision is not None
    assert (decision.action, decision.due, decision.in_window) == ("run", week_ago, at("2026-12-01T00:00:00"))
    # A window shorter than the time since the last due time: nothing is caught up.
    too_old = decide(job("@daily", week_ago), NOW, LEADER_SINCE, None, 6 * 3600)
    assert too_old is not None
    assert too_old.action == "too-old"


def test_a_jobs_own_window_replaces_the_stacks() -> None:
    due = LEADER_SINCE - timedelta(hours=2)
    assert decide(job("@hourly", due, metadata={}), NOW, LEADER_SINCE, None, DAY).action == "run"  # type: ignore[union-attr]
    # Due at 9:00 and 11:00 with no leader; at 12:00 a 30-minute window holds neither.
    three_hours_ago = LEADER_SINCE - timedelta(hours=3)
    tight = decide(
        job("@every 2h", three_hours_ago, metadata={WINDOW_KEY: "30m"}), NOW, LEADER_SINCE, None, DAY
    )
    assert tight is not None
    assert tight.action == "too-old"


def test_an_every_job_is_left_alone_when_its_new_schedule_runs_it_within_the_second() -> None:
    """Two runs in one second would look like a run twice: the leader's own run is near enough."""
    due = LEADER_SINCE - timedelta(seconds=0.5)
    quick = decide(job("@every 1s", due), NOW, LEADER_SINCE, OUTAGE_FROM, DAY)
    assert quick is not None
    assert quick.action == "imminent"
    slow = decide(job("@every 10s", due), NOW, LEADER_SINCE, OUTAGE_FROM, DAY)
    assert slow is not None
    assert slow.action == "run"


def test_the_watcher_runs_beside_the_agent_unless_turned_off() -> None:
    on = ClusterSpec.model_validate({"name": "c", "nodes": [{"name": "n1"}], "catch_up": {"window": "6h"}})
    command = agent_command(on, 8181)
    assert command[:2] == ["sh", "-c"]
    # The agent's own socket, which wants no token (mutual TLS, the default).
    assert "CATCHUP_API=unix:///tmp/dkron-iac-api.sock " in command[2]
    plain = on.model_copy(update={"security": on.security.model_copy(update={"mutual_tls": False})})
    assert "CATCHUP_API=http://127.0.0.1:8181 " in agent_command(plain, 8181)[2]
    assert "CATCHUP_WINDOW_S=21600 " in command[2]
    assert command[2].endswith("& exec dkron agent --config /etc/dkron/dkron.yml")
    off = ClusterSpec.model_validate({"name": "c", "nodes": [{"name": "n1"}], "catch_up": {"enabled": False}})
    assert "nodeside.catchup" not in agent_command(off)[2]
    assert agent_command(off, exporter=False) == ["dkron", "agent", "--config", "/etc/dkron/dkron.yml"]


def test_the_node_exporter_runs_beside_the_agent_on_one_engine() -> None:
    spec = ClusterSpec.model_validate({"name": "c", "nodes": [{"name": "n1"}]})
    command = agent_command(spec)[2]
    # Later than the agent and the watcher, and niced: it must not slow a new leader's take-over.
    assert (
        "(sleep 10 && exec nice -n 10 env EXPORTER_API=unix:///tmp/dkron-iac-api.sock EXPORTER_PORT=9180"
        " PYTHONPATH=/opt/dkron-iac python3 -m nodeside.exporter) &" in command
    )
    assert "nodeside.exporter" not in agent_command(spec, 8181, exporter=False)[2]


def test_a_window_that_is_not_a_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="Go duration of at least 1s"):
        ClusterSpec.model_validate({"name": "c", "nodes": [{"name": "n1"}], "catch_up": {"window": "a day"}})


def test_missed_due_times_come_from_the_last_run_which_survives_a_replay() -> None:
    """After a restart Dkron recomputes `next` from the replay; the last run's end is kept."""
    replayed_next = (LEADER_SINCE + timedelta(days=1)).isoformat()
    ran = job("0 55 11 * * *", last_success="2026-11-30T11:55:01.5Z", next=replayed_next)
    outage_from = at("2026-12-01T11:54:30")  # the last working leader was seen before it was due
    decision = decide(ran, NOW, LEADER_SINCE, outage_from, DAY)
    assert decision is not None
    assert (decision.action, decision.due) == ("run", at("2026-12-01T11:55:00"))
    # Never run: the next due time noted before the outage.
    never = job("0 55 11 * * *", next=replayed_next)
    assert decide(never, NOW, LEADER_SINCE, outage_from, DAY) is None
    noted = decide(never, NOW, LEADER_SINCE, outage_from, DAY, noted_next=at("2026-12-01T11:55:00"))
    assert noted is not None
    assert noted.action == "run"


def test_an_every_due_time_the_new_schedule_skips_waits_for_its_time() -> None:
    """A leader that took over at 12:00 runs `@every 10s` first at 12:00:09; 12:00:04 is caught up then."""
    ran = job("@every 10s", last_success="2026-12-01T11:59:54.2Z")
    early = decide(ran, NOW, LEADER_SINCE, OUTAGE_FROM, DAY)
    assert early is not None
    assert (early.action, early.due) == ("wait", at("2026-12-01T12:00:04"))
    later = decide(ran, at("2026-12-01T12:00:04.1"), LEADER_SINCE, OUTAGE_FROM, DAY)
    assert later is not None
    assert later.action == "run"
    # Due when the leader's own first run is less than a quarter second away: left to it.
    close = job("@every 10s", last_success="2026-12-01T11:59:58.9Z")
    imminent = decide(close, at("2026-12-01T12:00:08.9"), LEADER_SINCE, OUTAGE_FROM, DAY)
    assert imminent is not None
    assert imminent.action == "imminent"


def test_a_noted_due_time_outlives_the_later_one_a_replay_computes_until_the_job_runs() -> None:
    notes = Notes(None)
    due = "2026-12-01T11:55:00Z"
    notes.note_jobs([{"name": "report", "schedule": "0 55 11 * * *", "next": due}], NOW)
    replayed = {"name": "report", "schedule": "0 55 11 * * *", "next": "2026-12-02T11:55:00Z"}
    notes.note_jobs([replayed], NOW)
    assert notes.due("report") == at("2026-12-01T11:55:00")
    # A node still applying the log lists some jobs only: the others keep their notes.
    notes.note_jobs([], NOW)
    assert notes.due("report") == at("2026-12-01T11:55:00")
    # Once it ran after that due time, Dkron's next time is the one to note.
    notes.note_jobs([{**replayed, "last_success": "2026-12-01T12:00:01Z"}], NOW)
    assert notes.due("report") == at("2026-12-02T11:55:00")
    # A new schedule replaces what was noted for the old one; a job gone for two days is forgotten.
    notes.note_jobs([{**replayed, "schedule": "0 0 13 * * *", "next": "2026-12-01T13:00:00Z"}], NOW)
    assert notes.due("report") == at("2026-12-01T13:00:00")
    notes.note_jobs([], NOW + timedelta(days=3))
    assert notes.due("report") is None


def test_notes_survive_a_restart_in_their_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    notes = Notes(path)
    notes.note_jobs([{"name": "report", "schedule": "@daily", "next": "2026-12-02T00:00:00Z"}], NOW)
    notes.save(at("2026-12-01T12:00:00"))
    again = Notes(path)
    assert again.leader_seen_at == at("2026-12-01T12:00:00")
    assert again.due("report") == at("2026-12-02T00:00:00")


class GuardedApi:
    """The watcher's view of its agent, with the guard's answers given in advance."""

    guarded = True

    def __init__(self, jobs: list[dict[str, Any]], answers: list[tuple[int, dict[str, Any]]]) -> None:
        self._jobs, self._answers = jobs, answers
        self.asked: list[tuple[str, datetime]] = []
        self.plain_runs: list[str] = []

    def jobs(self) -> list[dict[str, Any]]:
        return self._jobs

    def catch_up(self, name: str, due: datetime) -> tuple[int, dict[str, Any]]:
        self.asked.append((name, due))
        return self._answers.pop(0)

    def running(self) -> set[str]:
        return set()

    def job(self, name: str) -> dict[str, Any] | None:
        return next(j for j in self._jobs if j["name"] == name)

    def run(self, name: str) -> int:
        self.plain_runs.append(name)
        return 202


def _scan(api: GuardedApi, done: set[str], held: dict[str, float]) -> bool:
    return catch_up(api, datetime.now(UTC), Notes(None), DAY, done, held)  # type: ignore[arg-type]


def _every_job() -> dict[str, Any]:
    """An @every job whose last run ended 5 s ago: its next due time passed without a run."""
    ended = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    return {"name": "tick", "schedule": "@every 2s", "last_success": ended, "metadata": {}}


def test_the_agents_guard_has_the_last_word_on_a_catch_up(capsys: pytest.CaptureFixture[str]) -> None:
    done: set[str] = set()
    held: dict[str, float] = {}
    # Before the scheduler starts the watcher asks again in a moment; then the guard starts the run.
    api = GuardedApi(
        [_every_job()], [(409, {"verdict": "no-scheduler"}), (202, {"verdict": "started", "group": 1})]
    )
    assert _scan(api, done, held) is True
    assert not done
    assert held
    held.clear()
    assert _scan(api, done, held) is False
    assert len(done) == 1
    assert len(api.asked) == 2
    assert api.plain_runs == []
    assert '"job": "tick"' in capsys.readouterr().out
    # Asked for the same due time again, nothing: it is done.
    assert _scan(api, done, held) is False
    assert len(api.asked) == 2


@pytest.mark.parametrize("verdict", ["served", "scheduled-run", "imminent", "not-scheduled"])
def test_a_guards_refusal_is_final_and_said(verdict: str, capsys: pytest.CaptureFixture[str]) -> None:
    done: set[str] = set()
    api = GuardedApi([_every_job()], [(409, {"verdict": verdict, "detail": "why"})])
    assert _scan(api, done, {}) is False
    assert len(done) == 1
    assert api.plain_runs == []
    assert f"catch-up: {verdict} " in capsys.readouterr().out


def test_without_a_guard_the_watcher_decides_alone() -> None:
    api = GuardedApi([_every_job()], [(404, {})])
    _scan(api, set(), {})
    assert api.guarded is False
    assert api.plain_runs == ["tick"]


def test_with_the_guard_due_times_well_past_the_new_schedulers_first_run_are_not_asked_about() -> None:
    # An @every 2s job the new scheduler has run since (its last run after the leadership began):
    # its next due time is the scheduler's; the watcher neither waits for it nor asks the guard.
    ran = (LEADER_SINCE + timedelta(seconds=4)).isoformat()
    later = LEADER_SINCE + timedelta(seconds=5)
    every = {"name": "tick", "schedule": "@every 2s", "last_success": ran, "metadata": {}}
    assert decide(every, later, LEADER_SINCE, OUTAGE_FROM, DAY, guarded=True) is None
    # One that last ran before the leadership: its missed due time goes to the guard.
    before = (LEADER_SINCE - timedelta(seconds=3)).isoformat()
    missed = decide({**every, "last_success": before}, later, LEADER_SINCE, OUTAGE_FROM, DAY, guarded=True)
    assert missed is not None
    assert missed.action == "run"
