"""Real PDF files for upload tests, made with pypdf (the registry refuses anything that is not one)."""

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, NameObject


def real_pdf(label: str = "signed consent", padding: int = 0) -> bytes:
    """A one-page PDF whose content stream carries `label` (so two labels give two hashes), plus `padding` bytes."""
    writer = PdfWriter()
    page = writer.add_blank_page(595, 842)
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 770 Td ({label}) Tj ET\n".encode() + b"%" * padding)
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
