"""Lambda entry point: the plan step of the groves batch prediction state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.plan_batch(event, context)
