"""Lambda entry point: the score_best step of the groves search state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.score_best(event, context)
