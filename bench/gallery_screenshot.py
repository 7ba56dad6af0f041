"""The screenshot of the pseudo-label gallery in ``docs/pseudo_label_gallery.png`` (docs/pseudo_labels.md).

A tiny synthetic generation, end to end: a small synthetic world (``ris synth``; one train image overwritten
with garbage bytes so the gallery lists a skipped image), the synthetic CoCa of ``ris demo`` (trained once, about a
minute, then cached), ``ris generate`` with ``configs/generate/synthetic.yaml`` on the first train images, then
``report/report.html`` opened in headless chromium (tests/browser.py) with the "kept only" filter and the
best-DoS sort applied, and the window saved as a PNG.

Run from the repository root: ``.venv/bin/python bench/gallery_screenshot.py [--out docs/pseudo_label_gallery.png]``
(needs ``chromium`` and ``chromedriver``: ``apt-get install -y chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.browser: the one place that starts the browser

from ris.pseudo.generate_command import main as generate  # noqa: E402
from ris.synthetic import write_world  # noqa: E402
from ris.synthetic.zoo import synthetic_coca  # noqa: E402
from tests.browser import chromium  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "pseudo_label_gallery.png"))
    parser.add_argument("--images", type=int, default=5, help="train images generated (one of them unreadable)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--captioner", help="a `local-dir:` CoCa (default: the cached synthetic CoCa of ris demo)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        world = write_world(Path(tmp) / "world", n_train=args.images, n_val=1, n_test=1, n_b_train=1, n_b_val=1,
                            n_b_test=1)
        broken = sorted((world.refer_root / "images").rglob("*.*"))[0]
        broken.write_bytes(b"not an image")
        out = Path(tmp) / "pseudo_labels"
        code = generate([
            "--config", str(ROOT / "configs" / "generate" / "synthetic.yaml"),
            "--model.captioner", args.captioner or synthetic_coca(),
            "--data.source.init_args.data_root", str(world.refer_root),
            "--output.dir", str(out), "--output.report_images", str(args.images),
            "--trainer.enable_progress_bar", "false",
        ])
        if code:
            raise SystemExit(f"ris generate failed (exit code {code})")
        with chromium(args.width, args.height) as browser:
            browser.get((out / "report" / "report.html").as_uri())
            browser.find_element("id", "f-kept").click()
            browser.execute_script("const s = document.getElementById('f-sort'); s.value = 'dos-desc';"
                                   "s.dispatchEvent(new Event('change'));")
            status = browser.find_element("id", "status").text
            browser.save_screenshot(args.out)
    print(f"{args.out}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
