"""Lambda entry point: the last step of the groves batch prediction state machine."""

from groves.steps import handlers


def handler(event, context):
    return handlers.assemble_predictions(event, context)
