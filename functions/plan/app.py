"""Lambda entry point: the plan step of the groves state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.plan(event, context)
