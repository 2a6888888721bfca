"""Lambda entry point: the predict step of the groves state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.predict(event, context)
