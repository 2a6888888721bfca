"""Lambda entry point: one file of a table planned in parts (the plan's Maps)."""

from groves.steps import handlers


def handler(event, context):
    return handlers.plan_part(event, context)
