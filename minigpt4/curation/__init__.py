"""Making a stage-2 set the way MiniGPT-4's ``cc_sbu_align`` was made: generate detailed descriptions with a
stage-1 model, refine them (rules, an OpenAI-compatible endpoint), filter, review and export.

Every step reads and appends to one JSONL store (:mod:`minigpt4.curation.store`); the steps are driven by one
validated YAML (:mod:`minigpt4.curation.config`) through ``python -m minigpt4.cli.curate``.
"""
