"""The alert rules, evaluated: which Event Grid metrics and which log queries page someone,
and whether the action group mails the given address."""

from __future__ import annotations

import re
from typing import Any

from tests.support.infra.bicep import Template, dig
from tests.support.infra.typecheck import evaluated_resources, module_env

TOPIC_METRICS = {"DeadLetteredCount", "DroppedEventCount", "DeliveryAttemptFailCount"}
PER_SUBSCRIPTION = {"name": "EventSubscriptionName", "operator": "Include", "values": ["*"]}


def alert_rules(template: Template, alert_email: str = "") -> dict[str, list[Any]]:
    env = module_env(template, {"alertEmail": alert_email}, "alerts")
    return {
        symbol: evaluated_resources(env, symbol)
        for symbol in ("actionGroup", "topicAlerts", "logAlerts")
    }


def log_query(rule: Any) -> str:
    (criterion,) = dig(rule, "properties", "criteria", "allOf") or [None]
    return str(dig(criterion, "query"))


def check_alerts(template: Template) -> list[str]:
    problems = []
    rules = alert_rules(template)
    metrics = set()
    for rule in rules["topicAlerts"]:
        (criterion,) = dig(rule, "properties", "criteria", "allOf") or [None]
        metrics.add(dig(criterion, "metricName"))
        if PER_SUBSCRIPTION not in (dig(criterion, "dimensions") or []):
            problems.append(f"{rule.get('name')}: must be split by EventSubscriptionName")
    problems += [f"no alert on {m}" for m in sorted(TOPIC_METRICS - metrics)]
    queries = [log_query(rule) for rule in rules["logAlerts"]]
    if not any("requests" in q and "success == false" in q for q in queries):
        problems.append("no log alert on failed function executions (requests, success == false)")
    if not any("track_batch_jobs" in q for q in queries):
        problems.append("no log alert on batch jobs that ended Failed (track_batch_jobs)")
    for email, receivers in (("", []), ("oncall@example.com", ["oncall@example.com"])):
        (group,) = alert_rules(template, email)["actionGroup"]
        found = [r.get("emailAddress") for r in dig(group, "properties", "emailReceivers") or []]
        if found != receivers:
            problems.append(f"alertEmail {email!r}: action group mails {found}")
    return problems


# ISO 8601 durations the alert parameters allow, in minutes.
_MINUTES = re.compile(r"^PT(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?$")


def minutes(duration: str) -> int:
    match = _MINUTES.match(duration)
    if not match or not (match["hours"] or match["minutes"]):
        raise ValueError(f"not a duration of hours and minutes: {duration!r}")
    return int(match["hours"] or 0) * 60 + int(match["minutes"] or 0)


def allowed(template: Template, parameter: str) -> list[Any]:
    """The @allowed values of a parameter of main.bicep."""
    declared = template.trees[(template.root / "main.bicep").resolve()]["parameters"][parameter]
    for decorator in declared.get("decorators") or []:
        if decorator.get("type") == "allowed":
            return list(decorator["argument"])
    raise AssertionError(f"main.bicep parameter {parameter} has no @allowed list")


def check_windows(template: Template) -> list[str]:
    """Azure Monitor refuses a rule whose window is shorter than its evaluation frequency; every
    pair the two parameters allow must give rules with the longer of the two as window."""
    problems = []
    for frequency in allowed(template, "alertEvaluationFrequency"):
        for window in allowed(template, "alertWindowSize"):
            parameters = {"alertEvaluationFrequency": frequency, "alertWindowSize": window}
            env = module_env(template, parameters, "alerts")
            expected = max(frequency, window, key=minutes)
            for symbol in ("topicAlerts", "logAlerts"):
                for rule in evaluated_resources(env, symbol):
                    found = (
                        dig(rule, "properties", "evaluationFrequency"),
                        dig(rule, "properties", "windowSize"),
                    )
                    if found != (frequency, expected):
                        problems.append(
                            f"alertEvaluationFrequency={frequency}, alertWindowSize={window}: "
                            f"{rule.get('name')} (evaluationFrequency, windowSize) is {found}, "
                            f"expected {(frequency, expected)}"
                        )
    return problems


def kql_matches(query: str, line: str) -> dict[str, str] | None:
    """Whether a ``traces`` row with message ``line`` passes this query's filters, and the
    columns its ``parse`` extracts. Understands the operators the batch-job query uses:
    ``startswith``, ``has`` and ``parse message with * "<text>" column ...``, then
    ``where column == "<value>"``; anything else raises so the test is rewritten with it."""
    columns: dict[str, str] = {}
    for stage in (s.strip() for s in query.split("|")[1:]):
        if match := re.fullmatch(r'where message startswith "([^"]*)"(?: and (.*))?', stage):
            if not line.startswith(match[1]):
                return None
            rest = match[2]
            for term in re.findall(r'message has "([^"]*)"', rest or ""):
                if term not in line:
                    return None
        elif match := re.fullmatch(r"parse message with \* (.*)", stage):
            parts = re.findall(r'"([^"]*)" (\w+)', match[1])
            pattern = "".join(f"{re.escape(text)}(?P<{name}>.*?)" for text, name in parts)
            found = re.search(pattern + "$", line)
            if not found:
                return None
            columns.update(found.groupdict())
        elif match := re.fullmatch(r'where (\w+) == "([^"]*)"', stage):
            if columns.get(match[1]) != match[2]:
                return None
        elif stage.startswith("summarize "):
            continue
        else:
            raise ValueError(f"kql_matches does not understand {stage!r}")
    return columns
