"""Lambda entry point: the plan_search step of the groves search state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.plan_search(event, context)
