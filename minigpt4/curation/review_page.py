"""The review page: the records the filter judged, one at a time, with accept / edit / reject.

``python -m minigpt4.cli.curate review --cfg-path X.yaml [--host 127.0.0.1] [--port 7861]`` serves it. Each record
shows its image, the text the model generated, the current (refined) text in an editable box, the filter's verdict
with its reasons and the decision taken so far. **Accept** keeps the current text, **Save edit** accepts the text
as edited in the box, **Reject** drops the record; each decision is appended to the store at once (the store is
the only state: reload the page, or start it again, and every decision is there). After a decision the page moves
to the next record still to review (passed the filter, no decision yet); previous / next reach every record,
the ones the filter rejected included (they can still be accepted). Keyboard, outside the text box: ``a`` accept, ``r`` reject, ``n`` / right arrow
next, ``p`` / left arrow previous; in the text box, Ctrl+Enter saves the edit.

As the demo, the page listens on 127.0.0.1 by default, Gradio's analytics are off, and nothing leaves the machine
(:mod:`minigpt4.cli.local_gradio`).
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PIL import Image

from minigpt4.curation.export import natural_key
from minigpt4.curation.filters import current_text
from minigpt4.curation.images import ref_from_json
from minigpt4.curation.review import counts, current_review, decide, verdict
from minigpt4.curation.store import Store

logger = logging.getLogger(__name__)

TITLE = "MiniGPT-4 stage-2 review"
NOTHING = "Nothing to review: run the filter step first."

#: keyboard shortcuts, run in the page once it has loaded
SHORTCUTS_JS = """
() => {
  const click = (id) => document.querySelector('#' + id)?.click();
  document.addEventListener('keydown', (e) => {
    const typing = ['TEXTAREA', 'INPUT'].includes(e.target.tagName);
    if (typing) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); click('edit-button'); }
      return;
    }
    const keys = {a: 'accept-button', r: 'reject-button', n: 'next-button', ArrowRight: 'next-button',
                  p: 'prev-button', ArrowLeft: 'prev-button'};
    if (keys[e.key] && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); click(keys[e.key]); }
  });
}
"""


class ReviewSession:
    """What the page shows and does, on a store (no Gradio here, so it can be tested on its own)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def ids(self) -> list[str]:
        """The ids of the records the filter judged, in natural order (``2`` before ``10``)."""
        return sorted((r["id"] for r in self.store if verdict(r) is not None), key=natural_key)

    def first_pending(self, ids: list[str], start: int = 0) -> int:
        """The index of the first record from ``start`` on (wrapping around) that passed the filter and has no
        decision on its current text (what the counts call "to review"); ``start`` itself when none is left.
        Records the filter rejected are reached with previous / next, and can still be accepted."""
        for step in range(len(ids)):
            index = (start + step) % len(ids)
            record = self.store.get(ids[index])
            if (verdict(record) or {}).get("passed") and current_review(record) is None:
                return index
        return start

    def view(self, index: int) -> dict[str, Any]:
        """Everything the page shows for the record at ``index`` (clamped into range)."""
        ids = self.ids()
        tally = counts(self.store)
        summary = (
            f"**{tally['total']}** judged: {tally['accept']} accepted, {tally['edit']} edited, "
            f"{tally['reject']} rejected, **{tally['pending']} to review**, {tally['filtered_out']} filtered out"
        )
        if not ids:
            return {"index": 0, "id": None, "counts": summary, "position": NOTHING, "image": None, "generated": "",
                    "text": "", "verdict": "", "decision": ""}  # fmt: skip
        index = min(max(index, 0), len(ids) - 1)
        record = self.store.get(ids[index])
        _, text, missing = current_text(record)
        judged = verdict(record) or {}
        reasons = judged.get("reasons") or []
        if judged.get("passed"):
            verdict_md = "Filter: **passed**"
        else:
            listed = "; ".join(f"{r.get('rule')}: {r.get('detail', '')}".rstrip(": ") for r in reasons)
            verdict_md = f"Filter: **rejected** ({html.escape(listed or 'no reason recorded')})"
        review = current_review(record)
        decision_md = (
            f"Decision: **{review['decision']}** (by {review.get('by', 'reviewer')})"
            if review
            else "Decision: none yet"
        )
        generated_key = (record.get("latest") or {}).get("generate")
        generated = ((record.get("texts") or {}).get(generated_key) or {}).get("text", "")
        return {
            "index": index,
            "id": record["id"],
            "counts": summary,
            "position": f"Record **{index + 1} / {len(ids)}**: id `{record['id']}`",
            "image": self.image(record),
            "generated": generated,
            "text": (review or {}).get("text") or text or (missing or ""),
            "verdict": verdict_md,
            "decision": decision_md,
        }

    @staticmethod
    def image(record: dict[str, Any]) -> Image.Image | None:
        try:
            with ref_from_json(record["id"], record["image"]).open() as image:
                return image.convert("RGB")
        except Exception as err:  # an unreadable image is shown as missing; its record can still be rejected
            logger.warning("record %s: cannot open its image: %s", record["id"], err)
            return None

    def decide(self, index: int, decision: str, text: str | None = None) -> int:
        """Store ``decision`` on the record at ``index``; the index of the next record without a decision."""
        ids = self.ids()
        decide(self.store, ids[index], decision, text if decision == "edit" else None)
        logger.info("record %s: %s", ids[index], decision)
        return self.first_pending(ids, (index + 1) % len(ids))


def build_review_page(store: Store) -> Any:
    """The Gradio page of ``store`` (see the module docstring)."""
    from minigpt4.cli import local_gradio

    gr = local_gradio.import_gradio()
    session = ReviewSession(store)
    fields = ("counts", "position", "image", "generated", "text", "verdict", "decision")

    def render(index: int) -> tuple:
        shown = session.view(index)
        return (shown["index"], *(shown[f] for f in fields))

    def on_load() -> tuple:
        store.reload()  # decisions made elsewhere (accept-passed, another page) since the last view
        ids = session.ids()
        return render(session.first_pending(ids) if ids else 0)

    def act(decision: str):
        def handler(index: int, text: str) -> tuple:
            if not session.ids():
                return render(0)
            try:
                return render(session.decide(index, decision, text))
            except ValueError as err:
                gr.Warning(str(err))
                return render(index)

        return handler

    with gr.Blocks(title=TITLE, analytics_enabled=local_gradio.analytics_enabled()) as page:
        gr.Markdown(f"## {TITLE}")
        counts_md = gr.Markdown(elem_id="review-counts")
        position_md = gr.Markdown(elem_id="review-position")
        index = gr.State(0)
        with gr.Row():
            image = gr.Image(type="pil", label="image", interactive=False, elem_id="review-image", height=320)
            with gr.Column():
                generated = gr.Textbox(
                    label="generated by the model", interactive=False, lines=4, elem_id="review-generated"
                )
                text = gr.Textbox(label="text to keep (edit, then Save edit)", lines=6, elem_id="review-text")
                verdict_md = gr.Markdown(elem_id="review-verdict")
                decision_md = gr.Markdown(elem_id="review-decision")
        with gr.Row():
            accept = gr.Button("Accept (a)", variant="primary", elem_id="accept-button")
            edit = gr.Button("Save edit (Ctrl+Enter)", elem_id="edit-button")
            reject = gr.Button("Reject (r)", variant="stop", elem_id="reject-button")
            prev = gr.Button("Previous (p)", elem_id="prev-button")
            nxt = gr.Button("Next (n)", elem_id="next-button")
        outputs = [index, counts_md, position_md, image, generated, text, verdict_md, decision_md]
        page.load(on_load, None, outputs)
        accept.click(act("accept"), [index, text], outputs)
        edit.click(act("edit"), [index, text], outputs)
        reject.click(act("reject"), [index, text], outputs)
        prev.click(lambda i: render(i - 1), [index], outputs)
        nxt.click(lambda i: render(i + 1), [index], outputs)
    return page


def serve(store: Store, host: str = "127.0.0.1", port: int = 7861) -> None:
    """Serve the review page until interrupted."""
    from minigpt4.cli import local_gradio

    page = build_review_page(store)
    page.queue(default_concurrency_limit=1)  # one decision at a time: the store has one writer
    local_gradio.launch(page, server_name=host, server_port=port, js=SHORTCUTS_JS)
