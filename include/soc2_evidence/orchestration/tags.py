"""DAG tags as constants, so the UI's filters and the tag policy test agree."""

PROJECT = "soc2-evidence"
FAMILY = "family:{family}"
TRIAGE_DATA_TEAM = "triage:data-team"


def dag_tags(family: str) -> list[str]:
    return [PROJECT, FAMILY.format(family=family), TRIAGE_DATA_TEAM]
