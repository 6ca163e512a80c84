"""Rhizome: turn a person's own material into their own language model.

Stages (each a subpackage, each callable from the CLI and the UI): ingest -> curate (build) ->
train -> export -> chat. Importing this package is cheap and never imports gradio; heavy
libraries load inside the stage that needs them.
"""

__version__ = "0.1.0"
