"""Lambda entry point: the merge step of the groves state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.merge(event, context)
