"""Lambda entry point: the train_grove step of the groves state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.train_grove(event, context)
