"""PDFs generated with PyMuPDF: two columns, running headers/footers, hyphenation, scanned, encrypted."""
import pymupdf

from rhizome.ingest import ingest_paths
from rhizome.workspace import read_jsonl

LEFT_1 = "Roots spread in every direc-\ntion at once. The rhizome grows\nunder-\nground in search of water."
RIGHT_1 = "The right column comes second.\nIt talks about sideways growth\nand new shoots in spring."
LEFT_2 = "Page two begins on the left\nwith a long sentence that\ncontinues."
RIGHT_2 = "Then the right column of page\ntwo ends the argument."
FULL_4 = "A single wide paragraph on the last page that runs across the whole width of it."


def write_pdf(path, encrypt=False):
    doc = pymupdf.open()
    pages = [(LEFT_1, RIGHT_1, "Two Columns of Roots"), (LEFT_2, RIGHT_2, None), None, FULL_4]
    for number, spec in enumerate(pages, start=1):
        page = doc.new_page(width=595, height=842)
        if spec is None:  # a scanned page: an image and no text layer
            pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 16, 16), False)
            pix.clear_with(180)
            page.insert_image(pymupdf.Rect(72, 72, 523, 770), pixmap=pix)
            continue
        page.insert_text((72, 40), "Journal of Rhizome Studies", fontsize=9)
        page.insert_text((255, 815), f"Page {number} of 4", fontsize=9)
        if number == 2:
            page.insert_text((510, 40), "2", fontsize=9)  # a bare page number in the top margin
        if isinstance(spec, str):
            page.insert_textbox(pymupdf.Rect(72, 130, 523, 700), spec, fontsize=10)
            continue
        left, right, title = spec
        if title:
            page.insert_textbox(pymupdf.Rect(72, 80, 523, 110), title, fontsize=14)
        page.insert_textbox(pymupdf.Rect(72, 130, 290, 700), left, fontsize=10)
        page.insert_textbox(pymupdf.Rect(305, 130, 523, 700), right, fontsize=10)
    doc.set_metadata({"title": "Rhizome Notes"})
    options = {"encryption": pymupdf.PDF_ENCRYPT_AES_256, "owner_pw": "owner", "user_pw": "user"} if encrypt else {}
    doc.save(path, **options)
    return path


def test_two_column_pdf_reads_in_order_without_furniture(ws, tmp_path):
    report = ingest_paths(ws, [write_pdf(tmp_path / "paper.pdf")])
    records = list(read_jsonl(ws.corpus))
    assert [(r["origin"], r["title"]) for r in records] == [
        ({"file": "paper.pdf", "page": 1}, "Rhizome Notes"), ({"file": "paper.pdf", "page": 2}, "Rhizome Notes"),
        ({"file": "paper.pdf", "page": 4}, "Rhizome Notes")]
    assert [r["text"] for r in records] == [
        "Two Columns of Roots\n\n"
        "Roots spread in every direction at once. The rhizome grows underground in search of water.\n\n"
        "The right column comes second. It talks about sideways growth and new shoots in spring.",
        "Page two begins on the left with a long sentence that continues.\n\n"
        "Then the right column of page two ends the argument.",
        FULL_4,
    ]
    assert records[0]["metadata"] == {"page": 1, "pages": 4}
    entry, = report["files"]
    assert (entry["status"], entry["format"]) == ("ok", "pdf")
    assert entry["counts"] == {"added": 3, "duplicates": 0, "pages": 4, "pages_with_text": 3, "records": 3,
                               "scanned_pages": 1, "dropped": {}}
    assert entry["reason"] == ("4 pages; 3 new record(s); "
                               "page(s) 3 have no text layer (scanned?); OCR them to include their text")


def test_encrypted_scanned_and_damaged_pdfs_are_reported(ws, tmp_path):
    write_pdf(tmp_path / "locked.pdf", encrypt=True)
    scanned = pymupdf.open()
    page = scanned.new_page()
    pix = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 8, 8), False)
    page.insert_image(page.rect, pixmap=pix)
    scanned.save(tmp_path / "scan.pdf")
    (tmp_path / "damaged.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf\n")
    write_pdf(tmp_path / "good.pdf")
    report = ingest_paths(ws, [tmp_path / n for n in ("locked.pdf", "scan.pdf", "damaged.pdf", "good.pdf")])
    got = [(e["file"], e["status"], e["reason"]) for e in report["files"]]
    assert got[:2] == [
        ("locked.pdf", "error", "locked.pdf is encrypted and needs a password; save an unlocked copy to ingest it"),
        ("scan.pdf", "error", "scan.pdf has no text layer (scanned pages 1); run OCR on it (for example "
                              "`ocrmypdf in.pdf out.pdf`) and ingest the result")]
    assert got[2][:2] == ("damaged.pdf", "error") and got[2][2].startswith("damaged.pdf is not a readable PDF")
    assert got[3][:2] == ("good.pdf", "ok")
    assert report["records_added"] == 3
