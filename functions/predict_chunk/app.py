"""Lambda entry point: one chunk of rows of the groves batch prediction state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.predict_chunk(event, context)
