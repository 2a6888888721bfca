"""Lambda entry point: the serve function, one build's model behind a Function URL."""

from groves.steps import serve

serve.prepare()  # the model is loaded in the init phase: the first request finds it ready


def handler(event, context):
    return serve.handler(event, context)
