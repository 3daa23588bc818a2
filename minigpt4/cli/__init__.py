"""Command-line entry points that talk to a trained model.

- ``python demo.py`` / ``python -m minigpt4.cli.web``: the Gradio chat demo;
- ``python -m minigpt4.cli.chat``: chat about an image in the terminal;
- ``python -m minigpt4.cli.caption``: batch captioning of a folder or a JSONL list into JSONL.
"""
