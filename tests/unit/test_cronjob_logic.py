"""Cron schedules (robfig/cron's standard grammar), time zones, missed start times, Job names."""

from __future__ import annotations

import datetime as dt

import pytest

from k8slite.api.cronschedule import ScheduleError, count_runs, parse, zone_problem
from k8slite.controllers.cronjob import job_from_template, job_name, missed_runs, rfc3339

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(spec: str, start: str, n: int, zone: str | None = None) -> list[str]:
    schedule = parse(spec, zone)
    out = []
    t: dt.datetime | None = at(start)
    for _ in range(n):
        assert t is not None
        t = schedule.next(t)
        assert t is not None
        out.append(t.astimezone(UTC).strftime("%Y-%m-%d %H:%M %a"))
    return out


def test_ranges_steps_lists_and_names() -> None:
    assert runs("*/20 * * * *", "2026-03-02 10:05", 3) == [
        "2026-03-02 10:20 Mon",
        "2026-03-02 10:40 Mon",
        "2026-03-02 11:00 Mon",
    ]
    assert runs("5/20 9-10 * * *", "2026-03-02 10:30", 3) == [
        "2026-03-02 10:45 Mon",
        "2026-03-03 09:05 Tue",
        "2026-03-03 09:25 Tue",
    ]
    assert runs("0 12 * jan,Jul sun", "2026-01-01 00:00", 2) == [
        "2026-01-04 12:00 Sun",
        "2026-01-11 12:00 Sun",
    ]
    assert runs("0 9 * * MON-FRI", "2026-03-06 10:00", 2) == [
        "2026-03-09 09:00 Mon",
        "2026-03-10 09:00 Tue",
    ]
    assert runs("30 1 1,15 * ?", "2026-02-14 00:00", 2) == [
        "2026-02-15 01:30 Sun",
        "2026-03-01 01:30 Sun",
    ]


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either day runs (the 13th, or any Friday).
    assert runs("0 0 13 * 5", "2026-02-01 00:00", 3) == [
        "2026-02-06 00:00 Fri",
        "2026-02-13 00:00 Fri",
        "2026-02-20 00:00 Fri",
    ]
    assert runs("0 0 13 * 5", "2026-03-08 00:00", 2) == [
        "2026-03-13 00:00 Fri",
        "2026-03-20 00:00 Fri",
    ]
    assert runs("0 0 10 * 1", "2026-03-08 00:00", 2) == [
        "2026-03-09 00:00 Mon",
        "2026-03-10 00:00 Tue",
    ]
    # A star in one leaves the other to decide; "*/2" is a restriction, not a star.
    assert runs("0 0 * * 1", "2026-03-08 00:00", 1) == ["2026-03-09 00:00 Mon"]
    assert runs("0 0 */10 * 1", "2026-03-08 00:00", 3) == [
        "2026-03-09 00:00 Mon",
        "2026-03-11 00:00 Wed",
        "2026-03-16 00:00 Mon",
    ]


def test_descriptors_and_every() -> None:
    start = "2026-05-17 13:45"
    assert runs("@hourly", start, 1) == ["2026-05-17 14:00 Sun"]
    assert runs("@daily", start, 1) == runs("@midnight", start, 1) == ["2026-05-18 00:00 Mon"]
    assert runs("@weekly", start, 1) == ["2026-05-24 00:00 Sun"]
    assert runs("@monthly", start, 1) == ["2026-06-01 00:00 Mon"]
    assert runs("@yearly", start, 1) == runs("@annually", start, 1) == ["2027-01-01 00:00 Fri"]
    assert runs("@every 1h30m", start, 2) == ["2026-05-17 15:15 Sun", "2026-05-17 16:45 Sun"]
    # The 30th of February never comes.
    assert parse("0 0 30 2 *").next(at(start)) is None


def test_time_zones_and_dst() -> None:
    # 09:00 in New York is 14:00 UTC in winter and 13:00 in summer.
    assert runs("0 9 * * *", "2026-03-07 00:00", 2, "America/New_York") == [
        "2026-03-07 14:00 Sat",
        "2026-03-08 13:00 Sun",
    ]
    # 02:30 does not exist in Berlin on the night clocks go forward: that day is skipped.
    assert runs("30 2 * * *", "2026-03-28 12:00", 1, "Europe/Berlin") == ["2026-03-30 00:30 Mon"]
    # 02:30 happens twice when they go back: it runs once.
    got = runs("30 2 * * *", "2026-10-24 12:00", 2, "Europe/Berlin")
    assert got == ["2026-10-25 00:30 Sun", "2026-10-26 01:30 Mon"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        (
            "* * * foo *",
            'failed to parse int from foo: strconv.Atoi: parsing "foo": invalid syntax',
        ),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse(spec)
    assert str(info.value) == message


def test_zone_problems() -> None:
    assert zone_problem("Europe/Paris") is None
    assert zone_problem("Mars/Olympus") == "unknown time zone Mars/Olympus"
    assert zone_problem("").startswith("timeZone must be nil")  # type: ignore[union-attr]
    assert "explicit time zone" in (zone_problem("Local") or "")


def cronjob(schedule: str, **spec: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "report",
            "namespace": "ns",
            "uid": "u1",
            "creationTimestamp": "2026-03-02T10:00:30Z",
        },
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": "report"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never"}}},
            },
            **spec,
        },
        "status": {},
    }


def test_missed_runs_and_deadline() -> None:
    cj = cronjob("* * * * *")
    schedule = parse("* * * * *")
    # Before the first minute boundary nothing is due.
    assert missed_runs(cj, schedule, at("2026-03-02 10:00:59"), True) == (None, 0)
    assert missed_runs(cj, schedule, at("2026-03-02 10:01:05"), True) == (at("2026-03-02 10:01"), 1)
    # Down for three hours: only the most recent time runs, and the count says too many.
    recent, missed = missed_runs(cj, schedule, at("2026-03-02 13:00:10"), True)
    assert recent == at("2026-03-02 13:00") and missed == 101
    assert count_runs(schedule, at("2026-03-02 10:00:30"), at("2026-03-02 10:30:00"), 101) == 30
    # A starting deadline moves the count's start: older times are past saving.
    cj = cronjob("* * * * *", startingDeadlineSeconds=200)
    recent, missed = missed_runs(cj, schedule, at("2026-03-02 13:00:10"), True)
    assert recent == at("2026-03-02 13:00") and missed == 4
    # lastScheduleTime is where counting resumes.
    cj = cronjob("*/5 * * * *")
    cj["status"] = {"lastScheduleTime": "2026-03-02T10:05:00Z"}
    assert missed_runs(cj, parse("*/5 * * * *"), at("2026-03-02 10:09:00"), True) == (None, 0)


def test_job_names_and_scheduled_timestamp() -> None:
    cj = cronjob("0 9 * * *", timeZone="Asia/Tokyo")
    scheduled = at("2026-03-02 00:00")
    assert job_name(cj, scheduled) == f"report-{int(scheduled.timestamp()) // 60}"
    job = job_from_template(cj, scheduled)
    annotations = job["metadata"]["annotations"]
    assert annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] == (
        "2026-03-02T09:00:00+09:00"
    )
    assert job["metadata"]["labels"] == {"app": "report"}
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["apiVersion"], ref["uid"], ref["controller"]) == (
        "CronJob",
        "batch/v1",
        "u1",
        True,
    )
    assert rfc3339(scheduled) == "2026-03-02T00:00:00Z"
