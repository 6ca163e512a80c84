"""Generate the sample PDF that `python -m rhizome demo` ingests.

Writes assets/sample/papers/garden_guide.pdf: three pages of original prose (written for
Rhizome) about a small no-dig vegetable garden. Every page carries the same running header and
a "Page N of M" footer, so the demo shows the PDF ingester stripping repeated headers/footers.
The standard Helvetica font is used, so nothing is embedded and the file stays a few KB.

Regenerate (from the repository root):

    .venv/bin/python assets/make_sample_pdf.py
"""
from pathlib import Path

import pymupdf

OUT = Path(__file__).resolve().parent / "sample" / "papers" / "garden_guide.pdf"
HEADER = "A Small Garden Guide - notes from a no-dig vegetable plot"
TITLE = "A Small Garden Guide"

# One entry per page: a list of (heading, paragraph) sections.
PAGES = [
    [
        ("Why no-dig",
         "A vegetable garden does not need a spade to begin. Digging breaks the web of fungi "
         "that carries water and nutrients to roots, and it brings buried weed seeds to the "
         "light where they sprout. A no-dig bed keeps that web intact and feeds it from above. "
         "Worms, beetles and fungi carry the organic matter down at their own pace, and the "
         "soil structure improves every year instead of being reset each spring."),
        ("Making the first bed",
         "Mark out a bed no wider than you can reach across, about one metre. Mow the grass "
         "short, then cover it with plain brown cardboard, overlapping the edges so no light "
         "gets through. Soak the cardboard thoroughly. Spread fifteen centimetres of compost on "
         "top and firm it gently with the back of a rake. You can plant or sow into the compost "
         "the same day; the grass underneath dies in the dark and becomes food for worms."),
        ("Choosing the first crops",
         "Start with crops that forgive mistakes and reward you quickly: radishes, lettuce, "
         "chard, bush beans and a tomato or two. Put tall plants on the north side so they do "
         "not shade the rest. Sow little and often, a short row every two weeks, so the harvest "
         "arrives steadily rather than all at once."),
    ],
    [
        ("Compost that works",
         "Good compost comes from balance. Mix roughly two parts brown material, such as dry "
         "leaves, straw and torn cardboard, with one part green material, such as kitchen "
         "scraps and fresh grass clippings. The heap should feel like a wrung-out sponge. A "
         "heap smaller than about a cubic metre loses its heat, so build it in one go when you "
         "can and turn it every few weeks to let air into the middle. Keep cooked food and meat "
         "out; they attract rats and smell as they rot."),
        ("Mulch and water",
         "Bare soil dries, crusts and grows weeds. Cover it. Straw, leaf mould and grass "
         "clippings all make good mulch once the soil has warmed in late spring. Keep mulch a "
         "few centimetres away from stems so they do not rot. Water deeply and rarely rather "
         "than a little every day: a thorough soaking every two or three days sends roots down "
         "to where the soil stays cool. Water in the early morning, when less is lost to the "
         "sun, and feel the soil with a finger before reaching for the can."),
        ("Slugs and other visitors",
         "Slugs love tender seedlings. Raise lettuce and beans in small pots until they are "
         "sturdy, then plant them out with a ring of grit around each one. A small pond invites "
         "frogs and ground beetles, which eat far more slugs than any trap. Evening patrols with "
         "a torch after rain do the rest."),
    ],
    [
        ("Flowers belong in the vegetable bed",
         "Borage, phacelia, marigolds and calendula bring pollinators and predatory insects "
         "into the garden. Plant them in clumps rather than single stems, and aim for something "
         "in flower from early spring to autumn. Bees forage more efficiently on large patches, "
         "and hoverflies whose larvae eat aphids need nectar before they lay their eggs."),
        ("Planting a fruit tree guild",
         "A guild is a small community of plants around one tree. Around a young apple, plant "
         "comfrey to draw up nutrients and provide mulch, chives to discourage pests, clover to "
         "fix nitrogen and a ring of daffodils to keep grass away from the roots. Each plant "
         "has a job, and together they make the tree less dependent on you."),
        ("Keeping a garden log",
         "Write down what you sowed, when, and how it did. A few lines a week are enough. After "
         "one season the log tells you when the last frost really came, which varieties "
         "thrived and which bed stayed wet. After three seasons it is the most valuable tool in "
         "the shed, because it replaces guesses with your own observations."),
    ],
]


def draw_page(doc: pymupdf.Document, sections: list, number: int, total: int) -> None:
    """Add one A5-ish page: running header, body text, page-number footer."""
    page = doc.new_page(width=420, height=595)
    page.insert_text((36, 28), HEADER, fontname="helv", fontsize=8, color=(0.4, 0.4, 0.4))
    page.draw_line((36, 34), (384, 34), color=(0.6, 0.6, 0.6), width=0.5)
    y = 52
    if number == 1:
        page.insert_text((36, y + 10), TITLE, fontname="hebo", fontsize=16)
        y += 30
    for heading, text in sections:
        page.insert_text((36, y + 10), heading, fontname="hebo", fontsize=11)
        box = pymupdf.Rect(36, y + 16, 384, 560)
        spare = page.insert_textbox(box, text, fontname="helv", fontsize=9.5, lineheight=1.3)
        if spare < 0:   # the text did not fit: fail loudly rather than write a truncated page
            raise ValueError(f"page {number}: section {heading!r} overflows the page")
        y = box.y1 - spare + 14
    footer = f"Page {number} of {total}"
    page.insert_text((184, 575), footer, fontname="helv", fontsize=8, color=(0.4, 0.4, 0.4))


def build_pdf(out: Path = OUT) -> Path:
    """Write the sample PDF to `out` and return its path."""
    doc = pymupdf.open()
    for number, sections in enumerate(PAGES, start=1):
        draw_page(doc, sections, number, len(PAGES))
    doc.set_metadata({"title": TITLE, "author": "Rhizome sample data",
                      "subject": "No-dig vegetable gardening"})
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(out, garbage=4, deflate=True)
    return out


if __name__ == "__main__":
    path = build_pdf()
    print(f"wrote {path} ({path.stat().st_size} bytes)")
