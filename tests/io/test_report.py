"""The HTML change report holds its images and states the numbers; generated text cannot inject HTML."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from rsneo.io.report import ChangeReport, ReportImage, png_data_uri, stretch_rgb, write_report


def test_report_embeds_images_and_numbers(shared_data, tmp_path):
    before = np.asarray(Image.open(shared_data / "levir_cd" / "A" / "test_2_0000_0000.png"))[..., :3]
    rgb = stretch_rgb(before.transpose(2, 0, 1).astype(np.float32), np.ones(before.shape[:2], bool))
    report = ChangeReport(
        title="Change test",
        inputs=["a.png", "b.png"],
        model="tiny",
        images=[
            ReportImage("before", png_data_uri(rgb)),
            ReportImage("change map", png_data_uri(rgb[..., 0])),
        ],
        measured=["Changed area: 1,234 pixels, 1.88 % of the compared area."],
        generated="<script>alert(1)</script> buildings appeared",
        table_header=["from", "to", "area (px)", "% of compared"],
        table_rows=[["change", "", "1,234", "1.88"]],
    )
    path = write_report(tmp_path / "report.html", report)
    html = path.read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 2
    decoded = Image.open(io.BytesIO(base64.b64decode(uris[0])))
    assert decoded.size == (256, 256)
    assert "Changed area: 1,234 pixels, 1.88 % of the compared area." in html
    assert "<td>1,234</td>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
